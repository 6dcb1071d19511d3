// hdrlift.ofx: an OpenFX image effect that reconstructs scene-linear HDR from SDR pictures on an
// hdrlift-serve server (gRPC contract hdrlift.v1).
//
// This binary links only the C and C++ runtimes and exports only OfxGetNumberOfPlugins and
// OfxGetPlugin. The gRPC client lives in the bundle's private lib/libhdrlift_grpc.so, loaded on
// first use with RTLD_LOCAL | RTLD_DEEPBIND (see bridge.h and docs/ofx.md), so nothing here can
// clash with a gRPC, protobuf or absl that the host has loaded.
//
// The server reconstructs whole frames (the contract carries no tiling margin, and networks see
// the whole picture): each render asks for the whole source, sends it top row first, and copies
// the render window out of the reply. The last reply is kept per instance, so the other tiles of
// the same frame and the same settings reuse it instead of asking again.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ofxCore.h"
#include "ofxImageEffect.h"
#include "ofxMemory.h"
#include "ofxMessage.h"
#include "ofxMultiThread.h"
#include "ofxParam.h"
#include "ofxProperty.h"

#include "bridge.h"

// OpenFX 1.5 colour management: the colour space a host says a clip's pixels are in. Read only
// (where a host sets it, "Auto" input uses it); declared here rather than in the API headers.
#ifndef kOfxImageClipPropColourspace
#define kOfxImageClipPropColourspace "OfxImageClipPropColourspace"
#endif

#define HDRLIFT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char *kPluginId = "org.hdrlift.Reconstruct";
constexpr unsigned kVersionMajor = 0, kVersionMinor = 1;

// parameter names
constexpr const char *kServers = "servers";
constexpr const char *kModel = "model";
constexpr const char *kModelMenu = "modelMenu";
constexpr const char *kRefresh = "refreshModels";
constexpr const char *kInputSpace = "inputSpace";
constexpr const char *kInputSpaceName = "inputSpaceName";
constexpr const char *kOutputSpace = "outputSpace";
constexpr const char *kOutputSpaceName = "outputSpaceName";
constexpr const char *kTokenFile = "tokenFile";
constexpr const char *kCaFile = "caFile";
constexpr const char *kTimeout = "timeout";
constexpr const char *kMaskInAlpha = "maskInAlpha";

struct SpaceOption {
  const char *label;
  const char *name;  // sent to the server; nullptr: the typed name
};
// "" = sRGB code values for the input, the server's default (ACEScg) for the output
const SpaceOption kInputSpaces[] = {{"Auto (host's working space, else sRGB)", ""},
                                    {"sRGB", "srgb"},
                                    {"Rec.709 (gamma 2.4)", "rec709"},
                                    {"Linear Rec.709", "lin_rec709"},
                                    {"ACEScg", "acescg"},
                                    {"Other (type below)", nullptr}};
const SpaceOption kOutputSpaces[] = {{"ACEScg", "acescg"},
                                     {"Linear Rec.709", "lin_rec709"},
                                     {"Linear Rec.2020", "lin_rec2020"},
                                     {"ACES2065-1", "aces2065-1"},
                                     {"Server default", ""},
                                     {"Other (type below)", nullptr}};
// The model menu when no server answers (hdrlift's registry); the typed name always wins.
const char *const kFallbackModels[] = {"hdrcnn-lite", "expandnet", "hdrunet", "inverse-crf",
                                       "landis", "akyuz", "huo", "kovaleski-oliveira"};
constexpr const char *kDefaultEntry = "Server default";
constexpr const char *kOtherEntry = "Other (typed name)";

OfxHost *gHost = nullptr;
const OfxPropertySuiteV1 *gProp = nullptr;
const OfxImageEffectSuiteV1 *gEffect = nullptr;
const OfxParameterSuiteV1 *gParam = nullptr;
const OfxMemorySuiteV1 *gMemory = nullptr;
const OfxMultiThreadSuiteV1 *gThreads = nullptr;
const OfxMessageSuiteV1 *gMessage1 = nullptr;
const OfxMessageSuiteV2 *gMessage2 = nullptr;
bool gHostMultipleDepths = false;

// ---------------------------------------------------------------- small helpers
std::string one_line(const std::string &s, size_t limit = 1000) {
  std::string out;
  for (unsigned char c : s) out.push_back(c < 0x20 || c == 0x7f ? ' ' : char(c));
  if (out.size() > limit) out = out.substr(0, limit - 3) + "...";
  return out;
}

std::string get_string(OfxPropertySetHandle p, const char *name, int i = 0) {
  char *v = nullptr;
  if (!p || gProp->propGetString(p, name, i, &v) != kOfxStatOK || !v) return "";
  return v;
}

int get_int(OfxPropertySetHandle p, const char *name, int i = 0, int fallback = 0) {
  int v = fallback;
  if (!p || gProp->propGetInt(p, name, i, &v) != kOfxStatOK) return fallback;
  return v;
}

void *get_pointer(OfxPropertySetHandle p, const char *name) {
  void *v = nullptr;
  if (!p || gProp->propGetPointer(p, name, 0, &v) != kOfxStatOK) return nullptr;
  return v;
}

OfxRectI get_recti(OfxPropertySetHandle p, const char *name) {
  OfxRectI r{0, 0, 0, 0};
  gProp->propGetIntN(p, name, 4, &r.x1);
  return r;
}

OfxPropertySetHandle effect_props(OfxImageEffectHandle e) {
  OfxPropertySetHandle p = nullptr;
  gEffect->getPropertySet(e, &p);
  return p;
}

// ---------------------------------------------------------------- the private gRPC library
std::once_flag gBridgeOnce;
const HdrliftBridgeV1 *gBridge = nullptr;
std::string gBridgeError;

const HdrliftBridgeV1 *bridge(std::string *err) {
  std::call_once(gBridgeOnce, [] {
    Dl_info info{};
    if (!dladdr(reinterpret_cast<void *>(&bridge), &info) || !info.dli_fname) {
      gBridgeError = "cannot locate hdrlift.ofx on disk";
      return;
    }
    std::string dir = info.dli_fname;
    dir = dir.substr(0, dir.find_last_of('/') + 1);
    std::string path = dir + "lib/libhdrlift_grpc.so";
    // RTLD_LOCAL: nothing of it enters the global scope; RTLD_DEEPBIND: it and the libraries it
    // brings (renamed copies, see tools/bundle.py) resolve their symbols among themselves first,
    // never in a gRPC/protobuf/absl the host has loaded. It stays loaded (gRPC's threads).
    void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      const char *e = dlerror();
      gBridgeError = "cannot load the plug-in's gRPC library: " + one_line(e ? e : path, 500);
      return;
    }
    auto entry = reinterpret_cast<HdrliftBridgeEntry>(dlsym(h, HDRLIFT_BRIDGE_SYMBOL));
    const HdrliftBridgeV1 *b = entry ? entry() : nullptr;
    if (!b || b->abi != HDRLIFT_BRIDGE_ABI) {
      gBridgeError = "the plug-in's gRPC library " + path + " does not match this plug-in";
      return;
    }
    gBridge = b;
  });
  if (!gBridge && err) *err = gBridgeError;
  return gBridge;
}

// ---------------------------------------------------------------- messages
void post_error(OfxImageEffectHandle e, const std::string &text) {
  std::string line = one_line("hdrlift: " + text);
  if (gMessage2)
    gMessage2->setPersistentMessage(e, kOfxMessageError, "org.hdrlift.error", "%s", line.c_str());
  else if (gMessage1)
    gMessage1->message(e, kOfxMessageError, "org.hdrlift.error", "%s", line.c_str());
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

void clear_error(OfxImageEffectHandle e) {
  if (gMessage2) gMessage2->clearPersistentMessage(e);
}

// ---------------------------------------------------------------- memory (host's memory suite)
class HostBuffer {
 public:
  HostBuffer(OfxImageEffectHandle e, size_t bytes) : bytes_(bytes) {
    if (gMemory) {
      if (gMemory->memoryAlloc(e, bytes, &data_) != kOfxStatOK) data_ = nullptr;
    } else {
      data_ = std::malloc(bytes);
    }
  }
  ~HostBuffer() {
    if (!data_) return;
    if (gMemory)
      gMemory->memoryFree(data_);
    else
      std::free(data_);
  }
  HostBuffer(const HostBuffer &) = delete;
  HostBuffer &operator=(const HostBuffer &) = delete;
  float *floats() const { return static_cast<float *>(data_); }
  bool ok() const { return data_ != nullptr || bytes_ == 0; }

 private:
  void *data_ = nullptr;
  size_t bytes_;
};

// ---------------------------------------------------------------- threads (host's suite)
struct RowJob {
  int rows;
  const std::function<void(int, int)> *fn;
};

void row_thread(unsigned int index, unsigned int count, void *arg) {
  auto *job = static_cast<RowJob *>(arg);
  int a = int(int64_t(job->rows) * index / count), b = int(int64_t(job->rows) * (index + 1) / count);
  if (a < b) (*job->fn)(a, b);
}

// fn(first_row, end_row) over [0, rows), split over the host's threads when it offers them.
void for_rows(int rows, const std::function<void(int, int)> &fn) {
  unsigned int n = 1;
  if (gThreads && rows >= 64) {
    if (gThreads->multiThreadNumCPUs(&n) != kOfxStatOK || n < 1) n = 1;
    n = std::min<unsigned>(n, unsigned(rows / 32));
  }
  RowJob job{rows, &fn};
  if (n > 1 && gThreads->multiThread(row_thread, n, &job) == kOfxStatOK) return;
  fn(0, rows);
}

// ---------------------------------------------------------------- images
struct Image {
  OfxPropertySetHandle handle = nullptr;
  char *data = nullptr;
  OfxRectI bounds{0, 0, 0, 0};
  int row_bytes = 0;
  int channels = 0;  // 3 or 4
  int depth = 0;     // bytes per sample: 1, 2 or 4 (float)
  std::string premult;

  ~Image() {
    if (handle) gEffect->clipReleaseImage(handle);
  }
  bool fetch(OfxImageClipHandle clip, OfxTime time, const OfxRectD *region, std::string *err, const char *what) {
    if (gEffect->clipGetImage(clip, time, region, &handle) != kOfxStatOK || !handle) {
      handle = nullptr;
      *err = std::string("the host gave no ") + what + " image";
      return false;
    }
    data = static_cast<char *>(get_pointer(handle, kOfxImagePropData));
    bounds = get_recti(handle, kOfxImagePropBounds);
    row_bytes = get_int(handle, kOfxImagePropRowBytes);
    std::string comps = get_string(handle, kOfxImageEffectPropComponents);
    std::string d = get_string(handle, kOfxImageEffectPropPixelDepth);
    premult = get_string(handle, kOfxImageEffectPropPreMultiplication);
    channels = comps == kOfxImageComponentRGBA ? 4 : comps == kOfxImageComponentRGB ? 3 : 0;
    depth = d == kOfxBitDepthFloat ? 4 : d == kOfxBitDepthShort ? 2 : d == kOfxBitDepthByte ? 1 : 0;
    if (!data || channels == 0 || depth == 0) {
      *err = std::string(what) + " image is " + (comps.empty() ? "?" : comps) + " " + (d.empty() ? "?" : d) +
             "; hdrlift takes RGB or RGBA in 8-bit, 16-bit or float";
      return false;
    }
    return true;
  }
  int width() const { return bounds.x2 - bounds.x1; }
  int height() const { return bounds.y2 - bounds.y1; }
  // Pixel (x, y) in the image's own pixel coordinates (bottom-up; rowBytes may be negative).
  char *pixel(int x, int y) const {
    return data + ptrdiff_t(y - bounds.y1) * ptrdiff_t(row_bytes) + ptrdiff_t(x - bounds.x1) * channels * depth;
  }
  float sample(const char *p, int c) const {
    switch (depth) {
      case 1: return float(reinterpret_cast<const uint8_t *>(p)[c]) / 255.0f;
      case 2: return float(reinterpret_cast<const uint16_t *>(p)[c]) / 65535.0f;
      default: return reinterpret_cast<const float *>(p)[c];
    }
  }
};

// ---------------------------------------------------------------- instances
struct Settings {
  std::string servers, model, input_space, output_space, token_file, ca_file;
  double timeout = 120.0;
  bool mask = false;

  std::string key() const {
    return servers + '\x1f' + model + '\x1f' + input_space + '\x1f' + output_space + '\x1f' + token_file + '\x1f' +
           ca_file + '\x1f' + (mask ? "1" : "0");
  }
};

struct Instance {
  OfxImageEffectHandle effect = nullptr;
  OfxImageClipHandle source = nullptr, output = nullptr;
  OfxParamHandle servers = nullptr, model = nullptr, menu = nullptr, in_space = nullptr, in_name = nullptr,
                 out_space = nullptr, out_name = nullptr, token_file = nullptr, ca_file = nullptr,
                 timeout = nullptr, mask = nullptr;
  std::mutex menu_mu;
  std::vector<std::string> menu_models;  // the names behind entries 1..n of the model menu

  // the last reply: the other tiles of a frame reuse it
  std::mutex cache_mu;
  uint64_t cache_hash = 0;
  std::string cache_key;
  int cache_w = 0, cache_h = 0;
  std::vector<float> cache;  // 4 planes (R, G, B, mask), top row first
};

Instance *instance_of(OfxImageEffectHandle e) {
  return static_cast<Instance *>(get_pointer(effect_props(e), kOfxPropInstanceData));
}

std::string param_string(OfxParamHandle p, OfxTime t) {
  char *v = nullptr;
  if (!p || gParam->paramGetValueAtTime(p, t, &v) != kOfxStatOK || !v) return "";
  std::string s(v);
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

int param_int(OfxParamHandle p, OfxTime t) {
  int v = 0;
  if (p) gParam->paramGetValueAtTime(p, t, &v);
  return v;
}

double param_double(OfxParamHandle p, OfxTime t) {
  double v = 0;
  if (p) gParam->paramGetValueAtTime(p, t, &v);
  return v;
}

template <size_t N>
std::string space_name(const SpaceOption (&options)[N], OfxParamHandle menu, OfxParamHandle typed, OfxTime t) {
  int i = std::clamp(param_int(menu, t), 0, int(N) - 1);
  return options[i].name ? options[i].name : param_string(typed, t);
}

Settings read_settings(Instance *inst, OfxTime t) {
  Settings s;
  s.servers = param_string(inst->servers, t);
  s.model = param_string(inst->model, t);
  s.input_space = space_name(kInputSpaces, inst->in_space, inst->in_name, t);
  s.output_space = space_name(kOutputSpaces, inst->out_space, inst->out_name, t);
  s.token_file = param_string(inst->token_file, t);
  s.ca_file = param_string(inst->ca_file, t);
  s.timeout = std::max(0.1, param_double(inst->timeout, t));
  s.mask = param_int(inst->mask, t) != 0;
  return s;
}

HdrliftConnection connection(const Settings &s, double timeout) {
  return HdrliftConnection{s.servers.c_str(), s.token_file.c_str(), s.ca_file.c_str(), timeout, 4};
}

// The model menu: "Server default", the models, "Other (typed name)". The typed name (param
// "model") is what renders and what projects save; the menu only writes it.
void set_menu_options(Instance *inst, const std::vector<std::string> &models) {
  OfxPropertySetHandle props = nullptr;
  if (gParam->paramGetPropertySet(inst->menu, &props) != kOfxStatOK) return;
  std::vector<const char *> entries{kDefaultEntry};
  for (const std::string &m : models) entries.push_back(m.c_str());
  entries.push_back(kOtherEntry);
  std::lock_guard<std::mutex> lock(inst->menu_mu);
  // hosts that keep describe-time options refuse this: the menu then keeps the fallback list
  if (gProp->propSetStringN(props, kOfxParamPropChoiceOption, int(entries.size()), entries.data()) == kOfxStatOK)
    inst->menu_models = models;
}

void sync_menu_to_model(Instance *inst, OfxTime t) {
  std::string model = param_string(inst->model, t);
  int index;
  {
    std::lock_guard<std::mutex> lock(inst->menu_mu);
    auto it = std::find(inst->menu_models.begin(), inst->menu_models.end(), model);
    index = model.empty() ? 0
            : it != inst->menu_models.end() ? int(it - inst->menu_models.begin()) + 1
                                            : int(inst->menu_models.size()) + 1;
  }
  if (param_int(inst->menu, t) != index) gParam->paramSetValue(inst->menu, index);
}

// Asks the server for its runnable models. False (and err) when it does not answer.
bool refresh_menu(Instance *inst, OfxTime t, double timeout, std::string *err) {
  const HdrliftBridgeV1 *b = bridge(err);
  if (!b) return false;
  Settings s = read_settings(inst, t);
  HdrliftConnection c = connection(s, std::min(timeout, s.timeout));
  std::vector<char> out(64 << 10);
  char ebuf[2048] = {0};
  if (b->list_models(&c, out.data(), out.size(), ebuf, sizeof ebuf) != HDRLIFT_OK) {
    *err = ebuf;
    return false;
  }
  std::vector<std::string> models;
  const char *p = out.data();
  while (*p) {
    const char *tab = std::strchr(p, '\t');
    const char *nl = std::strchr(p, '\n');
    if (!tab || !nl || tab > nl) break;
    models.emplace_back(p, tab);
    p = nl + 1;
  }
  set_menu_options(inst, models);
  sync_menu_to_model(inst, t);
  return true;
}

// ---------------------------------------------------------------- describe
OfxStatus define_param(OfxParamSetHandle set, const char *type, const char *name, const char *label,
                       const char *hint, OfxPropertySetHandle *props) {
  OfxStatus st = gParam->paramDefine(set, type, name, props);
  if (st != kOfxStatOK) return st;
  gProp->propSetString(*props, kOfxPropLabel, 0, label);
  gProp->propSetString(*props, kOfxParamPropScriptName, 0, name);
  gProp->propSetString(*props, kOfxParamPropHint, 0, hint);
  return kOfxStatOK;
}

OfxStatus describe(OfxImageEffectHandle e) {
  OfxPropertySetHandle p = effect_props(e);
  gProp->propSetString(p, kOfxPropLabel, 0, "hdrlift");
  gProp->propSetString(p, kOfxPropShortLabel, 0, "hdrlift");
  gProp->propSetString(p, kOfxPropLongLabel, 0, "hdrlift: SDR to scene-linear HDR");
  gProp->propSetString(p, kOfxPropPluginDescription, 0,
                       "Reconstructs scene-linear HDR from SDR/LDR pictures with single-image HDR networks "
                       "running on an hdrlift-serve server. Input: display-referred code values (sRGB by "
                       "default); output: scene-linear float in the chosen colour space.");
  gProp->propSetString(p, kOfxImageEffectPluginPropGrouping, 0, "Color/HDR");
  int version[3] = {int(kVersionMajor), int(kVersionMinor), 0};
  gProp->propSetIntN(p, kOfxPropVersion, 3, version);
  gProp->propSetString(p, kOfxPropVersionLabel, 0, "0.1.0");
  gProp->propSetString(p, kOfxPropIcon, 0, "org.hdrlift.Reconstruct.svg");
  gProp->propSetString(p, kOfxPropIcon, 1, "org.hdrlift.Reconstruct.png");
  const char *contexts[] = {kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral};
  gProp->propSetStringN(p, kOfxImageEffectPropSupportedContexts, 2, contexts);
  const char *depths[] = {kOfxBitDepthByte, kOfxBitDepthShort, kOfxBitDepthFloat};
  gProp->propSetStringN(p, kOfxImageEffectPropSupportedPixelDepths, 3, depths);
  gProp->propSetInt(p, kOfxImageEffectPluginPropSingleInstance, 0, 0);
  gProp->propSetString(p, kOfxImageEffectPluginRenderThreadSafety, 0, kOfxImageEffectRenderFullySafe);
  gProp->propSetInt(p, kOfxImageEffectPluginPropHostFrameThreading, 0, 0);
  gProp->propSetInt(p, kOfxImageEffectPropSupportsMultiResolution, 0, 1);
  gProp->propSetInt(p, kOfxImageEffectPropSupportsTiles, 0, 1);
  gProp->propSetInt(p, kOfxImageEffectPropTemporalClipAccess, 0, 0);
  gProp->propSetInt(p, kOfxImageEffectPropSupportsMultipleClipDepths, 0, 1);
  gProp->propSetInt(p, kOfxImageEffectPropSupportsMultipleClipPARs, 0, 0);
  gProp->propSetString(p, kOfxImageEffectPropClipPreferencesSlaveParam, 0, kMaskInAlpha);
  return kOfxStatOK;
}

OfxStatus describe_in_context(OfxImageEffectHandle e) {
  OfxPropertySetHandle clip = nullptr;
  const char *comps[] = {kOfxImageComponentRGBA, kOfxImageComponentRGB};
  for (const char *name : {kOfxImageEffectSimpleSourceClipName, kOfxImageEffectOutputClipName}) {
    if (gEffect->clipDefine(e, name, &clip) != kOfxStatOK) return kOfxStatErrFatal;
    gProp->propSetStringN(clip, kOfxImageEffectPropSupportedComponents, 2, comps);
    gProp->propSetInt(clip, kOfxImageEffectPropSupportsTiles, 0, 1);
    gProp->propSetInt(clip, kOfxImageEffectPropTemporalClipAccess, 0, 0);
  }
  OfxParamSetHandle set = nullptr;
  gEffect->getParamSet(e, &set);
  OfxPropertySetHandle p = nullptr;
  const char *env = std::getenv("HDRLIFT_SERVER");

  define_param(set, kOfxParamTypeString, kServers, "Servers",
               "hdrlift-serve address, or several as host:port,host:port (round-robin; a server that "
               "fails hands the frame to the others)",
               &p);
  gProp->propSetString(p, kOfxParamPropDefault, 0, env && *env ? env : "localhost:50051");
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypeChoice, kModelMenu, "Model",
               "Models the server runs (asked when the node is created; Refresh asks again). Picking one "
               "fills Model name, which is what renders.",
               &p);
  std::vector<const char *> entries{kDefaultEntry};
  for (const char *m : kFallbackModels) entries.push_back(m);
  entries.push_back(kOtherEntry);
  gProp->propSetStringN(p, kOfxParamPropChoiceOption, int(entries.size()), entries.data());
  gProp->propSetInt(p, kOfxParamPropDefault, 0, 0);
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);
  gProp->propSetInt(p, kOfxParamPropEvaluateOnChange, 0, 0);
  gProp->propSetInt(p, kOfxParamPropPersistant, 0, 0);

  define_param(set, kOfxParamTypeString, kModel, "Model name",
               "The model to run (empty: the server's default). Typed here when the menu does not list it.",
               &p);
  gProp->propSetString(p, kOfxParamPropDefault, 0, "");
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypePushButton, kRefresh, "Refresh models", "Ask the server for its models again", &p);

  define_param(set, kOfxParamTypeChoice, kInputSpace, "Input colour space",
               "Colour space of the input code values. Auto: the host's working space where the host says "
               "one (OpenFX 1.5 colour management), else sRGB-encoded.",
               &p);
  for (size_t i = 0; i < sizeof kInputSpaces / sizeof *kInputSpaces; ++i)
    gProp->propSetString(p, kOfxParamPropChoiceOption, int(i), kInputSpaces[i].label);
  gProp->propSetInt(p, kOfxParamPropDefault, 0, 0);
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);
  define_param(set, kOfxParamTypeString, kInputSpaceName, "Input space name",
               "With Other: a colour space name of the server's OCIO config, or an hdrlift alias", &p);
  gProp->propSetString(p, kOfxParamPropDefault, 0, "");
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypeChoice, kOutputSpace, "Output colour space", "Scene-linear output colour space",
               &p);
  for (size_t i = 0; i < sizeof kOutputSpaces / sizeof *kOutputSpaces; ++i)
    gProp->propSetString(p, kOfxParamPropChoiceOption, int(i), kOutputSpaces[i].label);
  gProp->propSetInt(p, kOfxParamPropDefault, 0, 0);
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);
  define_param(set, kOfxParamTypeString, kOutputSpaceName, "Output space name",
               "With Other: a colour space name of the server's OCIO config, or an hdrlift alias", &p);
  gProp->propSetString(p, kOfxParamPropDefault, 0, "");
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypeBoolean, kMaskInAlpha, "Mask in alpha",
               "Output the reconstruction mask (which pixels were expanded) in alpha instead of the input's "
               "alpha, to grade only what was reconstructed. The output is then not premultiplied.",
               &p);
  gProp->propSetInt(p, kOfxParamPropDefault, 0, 0);
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypeString, kTokenFile, "Token file",
               "File holding the server's bearer token (first line that is not empty or a # comment). Empty: "
               "$HDRLIFT_TOKEN, else none",
               &p);
  gProp->propSetString(p, kOfxParamPropStringMode, 0, kOfxParamStringIsFilePath);
  gProp->propSetInt(p, kOfxParamPropStringFilePathExists, 0, 1);
  gProp->propSetString(p, kOfxParamPropDefault, 0, "");
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypeString, kCaFile, "TLS CA file",
               "PEM file of the certificate authority that signed the server's certificate: the connection "
               "then uses TLS. Empty: plaintext",
               &p);
  gProp->propSetString(p, kOfxParamPropStringMode, 0, kOfxParamStringIsFilePath);
  gProp->propSetInt(p, kOfxParamPropStringFilePathExists, 0, 1);
  gProp->propSetString(p, kOfxParamPropDefault, 0, "");
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);

  define_param(set, kOfxParamTypeDouble, kTimeout, "Timeout (s)",
               "Longest a frame may take, retries included; then the render fails with DEADLINE_EXCEEDED", &p);
  gProp->propSetDouble(p, kOfxParamPropDefault, 0, 120.0);
  gProp->propSetDouble(p, kOfxParamPropMin, 0, 0.1);
  gProp->propSetDouble(p, kOfxParamPropMax, 0, 86400.0);
  gProp->propSetDouble(p, kOfxParamPropDisplayMin, 0, 1.0);
  gProp->propSetDouble(p, kOfxParamPropDisplayMax, 0, 600.0);
  gProp->propSetInt(p, kOfxParamPropAnimates, 0, 0);
  return kOfxStatOK;
}

// ---------------------------------------------------------------- instance life
OfxStatus create_instance(OfxImageEffectHandle e) {
  auto *inst = new Instance;
  inst->effect = e;
  gProp->propSetPointer(effect_props(e), kOfxPropInstanceData, 0, inst);
  gEffect->clipGetHandle(e, kOfxImageEffectSimpleSourceClipName, &inst->source, nullptr);
  gEffect->clipGetHandle(e, kOfxImageEffectOutputClipName, &inst->output, nullptr);
  OfxParamSetHandle set = nullptr;
  gEffect->getParamSet(e, &set);
  auto handle = [&](const char *name) {
    OfxParamHandle h = nullptr;
    gParam->paramGetHandle(set, name, &h, nullptr);
    return h;
  };
  inst->servers = handle(kServers);
  inst->model = handle(kModel);
  inst->menu = handle(kModelMenu);
  inst->in_space = handle(kInputSpace);
  inst->in_name = handle(kInputSpaceName);
  inst->out_space = handle(kOutputSpace);
  inst->out_name = handle(kOutputSpaceName);
  inst->token_file = handle(kTokenFile);
  inst->ca_file = handle(kCaFile);
  inst->timeout = handle(kTimeout);
  inst->mask = handle(kMaskInAlpha);
  if (!inst->source || !inst->output || !inst->servers || !inst->model || !inst->menu || !inst->in_space ||
      !inst->in_name || !inst->out_space || !inst->out_name || !inst->token_file || !inst->ca_file ||
      !inst->timeout || !inst->mask) {
    gProp->propSetPointer(effect_props(e), kOfxPropInstanceData, 0, nullptr);
    delete inst;
    return kOfxStatErrFatal;
  }
  inst->menu_models.assign(std::begin(kFallbackModels), std::end(kFallbackModels));
  // The menu from the server (3 s at most): without an answer it keeps the fallback list, and
  // the typed model name works as ever. Not an error: the server may simply not be up yet.
  std::string err;
  if (!refresh_menu(inst, 0.0, 3.0, &err)) sync_menu_to_model(inst, 0.0);
  return kOfxStatOK;
}

OfxStatus destroy_instance(OfxImageEffectHandle e) {
  Instance *inst = instance_of(e);
  gProp->propSetPointer(effect_props(e), kOfxPropInstanceData, 0, nullptr);
  delete inst;
  return kOfxStatOK;
}

OfxStatus instance_changed(OfxImageEffectHandle e, OfxPropertySetHandle in) {
  Instance *inst = instance_of(e);
  if (!inst) return kOfxStatErrBadHandle;
  std::string type = get_string(in, kOfxPropType), name = get_string(in, kOfxPropName);
  std::string reason = get_string(in, kOfxPropChangeReason);
  double t = 0;
  gProp->propGetDouble(in, kOfxPropTime, 0, &t);
  if (type != kOfxTypeParameter) return kOfxStatReplyDefault;
  if (name == kModelMenu && reason == kOfxChangeUserEdited) {
    int i = param_int(inst->menu, t);
    std::string model;
    {
      std::lock_guard<std::mutex> lock(inst->menu_mu);
      if (i >= 1 && i <= int(inst->menu_models.size()))
        model = inst->menu_models[size_t(i - 1)];
      else if (i != 0)
        return kOfxStatOK;  // "Other": the typed name stays
    }
    gParam->paramSetValue(inst->model, model.c_str());
    return kOfxStatOK;
  }
  if (name == kModel && reason != kOfxChangePluginEdited) {
    sync_menu_to_model(inst, t);
    return kOfxStatOK;
  }
  if (name == kRefresh) {
    std::string err;
    if (!refresh_menu(inst, t, 10.0, &err) && gMessage1)
      gMessage1->message(e, kOfxMessageWarning, "org.hdrlift.models", "%s",
                         one_line("hdrlift: " + err + " (the menu keeps its models; a typed name still works)")
                             .c_str());
    return kOfxStatOK;
  }
  return kOfxStatReplyDefault;
}

// ---------------------------------------------------------------- clip preferences, regions
OfxStatus clip_preferences(OfxImageEffectHandle e, OfxPropertySetHandle out) {
  Instance *inst = instance_of(e);
  if (!inst) return kOfxStatErrBadHandle;
  OfxPropertySetHandle src = nullptr;
  gEffect->clipGetPropertySet(inst->source, &src);
  std::string comps = get_string(src, kOfxImageEffectPropComponents);
  std::string premult = get_string(src, kOfxImageEffectPropPreMultiplication);
  bool mask = param_int(inst->mask, 0.0) != 0;
  // HDR needs float: the output is float; the input keeps the host's depth where the host
  // handles several depths at once, else it too is asked for in float.
  gProp->propSetString(out, "OfxImageClipPropDepth_Output", 0, kOfxBitDepthFloat);
  if (!gHostMultipleDepths) gProp->propSetString(out, "OfxImageClipPropDepth_Source", 0, kOfxBitDepthFloat);
  bool rgba = comps != kOfxImageComponentRGB || mask;
  gProp->propSetString(out, "OfxImageClipPropComponents_Output", 0,
                       rgba ? kOfxImageComponentRGBA : kOfxImageComponentRGB);
  // the mask is a matte, not coverage: with it the output is straight (unpremultiplied)
  std::string out_premult = mask ? kOfxImageUnPreMultiplied
                            : !rgba ? kOfxImageOpaque
                            : premult.empty() ? kOfxImagePreMultiplied
                                              : premult;
  gProp->propSetString(out, kOfxImageEffectPropPreMultiplication, 0, out_premult.c_str());
  return kOfxStatOK;
}

OfxStatus regions_of_interest(OfxImageEffectHandle e, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  Instance *inst = instance_of(e);
  if (!inst) return kOfxStatErrBadHandle;
  double t = 0;
  gProp->propGetDouble(in, kOfxPropTime, 0, &t);
  OfxRectD rod{0, 0, 0, 0};
  if (gEffect->clipGetRegionOfDefinition(inst->source, t, &rod) != kOfxStatOK) return kOfxStatReplyDefault;
  // the whole source, whatever the window: the server reconstructs whole frames
  gProp->propSetDoubleN(out, "OfxImageClipPropRoI_Source", 4, &rod.x1);
  return kOfxStatOK;
}

// ---------------------------------------------------------------- render
uint64_t fnv1a(const void *data, size_t n, uint64_t h = 1469598103934665603ull) {
  const uint8_t *p = static_cast<const uint8_t *>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int poll_abort(void *user) { return gEffect->abort(static_cast<OfxImageEffectHandle>(user)); }

OfxStatus render(OfxImageEffectHandle e, OfxPropertySetHandle in) {
  Instance *inst = instance_of(e);
  if (!inst) return kOfxStatErrBadHandle;
  double t = 0;
  gProp->propGetDouble(in, kOfxPropTime, 0, &t);
  OfxRectI window = get_recti(in, kOfxImageEffectPropRenderWindow);
  std::string err;
  auto fail = [&](const std::string &text) {
    post_error(e, text);
    return kOfxStatFailed;
  };

  Image dst;
  if (!dst.fetch(inst->output, t, nullptr, &err, "output")) return fail(err);
  if (dst.depth != 4) return fail("the host gave a non-float output image; HDR output must be float");
  // the whole source frame (its region of definition); an infinite or unknown one: what the
  // host gives for the region of interest
  OfxRectD rod{0, 0, 0, 0};
  bool finite = gEffect->clipGetRegionOfDefinition(inst->source, t, &rod) == kOfxStatOK && rod.x2 > rod.x1 &&
                rod.y2 > rod.y1 && std::fabs(rod.x1) < 1e8 && std::fabs(rod.y1) < 1e8 && std::fabs(rod.x2) < 1e8 &&
                std::fabs(rod.y2) < 1e8;
  Image src;
  if (!src.fetch(inst->source, t, finite ? &rod : nullptr, &err, "source")) return fail(err);
  const int w = src.width(), h = src.height();
  if (w < 1 || h < 1) return fail("the source image is empty");
  if (double(w) * double(h) > double(1 << 30)) return fail("the source image is too large");

  Settings s = read_settings(inst, t);
  if (s.input_space.empty()) {  // Auto: the host's colour space for the clip, where it says one
    OfxPropertySetHandle sp = nullptr;
    gEffect->clipGetPropertySet(inst->source, &sp);
    s.input_space = get_string(sp, kOfxImageClipPropColourspace);
  }
  const bool premultiplied = src.channels == 4 && src.premult == kOfxImagePreMultiplied;
  const size_t plane = size_t(w) * size_t(h);

  // source -> planar float RGB, top row first, unpremultiplied
  HostBuffer rgb(e, plane * 3 * sizeof(float));
  if (!rgb.ok()) return fail("out of memory for a " + std::to_string(w) + "x" + std::to_string(h) + " frame");
  float *planes = rgb.floats();
  for_rows(h, [&](int r0, int r1) {
    for (int r = r0; r < r1; ++r) {
      const int y = src.bounds.y2 - 1 - r;
      for (int x = 0; x < w; ++x) {
        const char *px = src.pixel(src.bounds.x1 + x, y);
        float c[3] = {src.sample(px, 0), src.sample(px, 1), src.sample(px, 2)};
        if (premultiplied) {
          float a = src.sample(px, 3);
          if (a > 0.0f)
            for (float &v : c) v /= a;
        }
        const size_t i = size_t(r) * size_t(w) + size_t(x);
        planes[i] = c[0];
        planes[plane + i] = c[1];
        planes[2 * plane + i] = c[2];
      }
    }
  });
  const std::string key = s.key();
  const uint64_t hash = fnv1a(key.data(), key.size(), fnv1a(planes, plane * 3 * sizeof(float)));

  std::lock_guard<std::mutex> lock(inst->cache_mu);  // the frame's other tiles wait, then reuse
  if (!(inst->cache_hash == hash && inst->cache_key == key && inst->cache_w == w && inst->cache_h == h &&
        inst->cache.size() == plane * 4)) {
    const HdrliftBridgeV1 *b = bridge(&err);
    if (!b) return fail(err);
    inst->cache.clear();
    inst->cache_w = inst->cache_h = 0;
    std::vector<float> result;
    try {
      result.resize(plane * 4);
    } catch (const std::bad_alloc &) {
      return fail("out of memory for a " + std::to_string(w) + "x" + std::to_string(h) + " frame");
    }
    char out_space[256] = {0}, ebuf[2048] = {0};
    HdrliftConnection c = connection(s, s.timeout);
    HdrliftFrame f{w, h, planes, s.model.c_str(), s.input_space.c_str(), s.output_space.c_str(), s.mask ? 1 : 0,
                   result.data(), out_space, sizeof out_space};
    int rc = b->reconstruct(&c, &f, poll_abort, e, ebuf, sizeof ebuf);
    if (rc == HDRLIFT_ABORTED) return kOfxStatOK;  // the host abandons this render: no message
    if (rc != HDRLIFT_OK) return fail(ebuf);
    inst->cache.swap(result);
    inst->cache_hash = hash;
    inst->cache_key = key;
    inst->cache_w = w;
    inst->cache_h = h;
  }
  const float *res = inst->cache.data();

  // reply -> the render window of the output, bottom-up; alpha from the source, or the mask
  OfxRectI win{std::max(window.x1, dst.bounds.x1), std::max(window.y1, dst.bounds.y1),
               std::min(window.x2, dst.bounds.x2), std::min(window.y2, dst.bounds.y2)};
  if (win.x2 <= win.x1 || win.y2 <= win.y1) {
    clear_error(e);
    return kOfxStatOK;
  }
  for_rows(win.y2 - win.y1, [&](int r0, int r1) {
    for (int yy = r0; yy < r1; ++yy) {
      const int y = win.y1 + yy;
      const int row = src.bounds.y2 - 1 - y;  // row in the frame sent (top first)
      float *out = reinterpret_cast<float *>(dst.pixel(win.x1, y));
      for (int x = win.x1; x < win.x2; ++x, out += dst.channels) {
        const int col = x - src.bounds.x1;
        if (row < 0 || row >= h || col < 0 || col >= w) {  // outside the source: transparent black
          std::fill(out, out + dst.channels, 0.0f);
          continue;
        }
        const size_t i = size_t(row) * size_t(w) + size_t(col);
        float r = res[i], g = res[plane + i], bl = res[2 * plane + i];
        if (dst.channels == 4) {
          float a;
          if (s.mask)
            a = res[3 * plane + i];
          else if (src.channels == 4)
            a = src.sample(src.pixel(x, y), 3);
          else
            a = 1.0f;
          if (premultiplied && !s.mask) {
            r *= a;
            g *= a;
            bl *= a;
          }
          out[3] = a;
        }
        out[0] = r;
        out[1] = g;
        out[2] = bl;
      }
    }
  });
  clear_error(e);
  return kOfxStatOK;
}

// ---------------------------------------------------------------- entry
OfxStatus load() {
  if (!gHost) return kOfxStatErrMissingHostFeature;
  gProp = static_cast<const OfxPropertySuiteV1 *>(gHost->fetchSuite(gHost->host, kOfxPropertySuite, 1));
  gEffect = static_cast<const OfxImageEffectSuiteV1 *>(gHost->fetchSuite(gHost->host, kOfxImageEffectSuite, 1));
  gParam = static_cast<const OfxParameterSuiteV1 *>(gHost->fetchSuite(gHost->host, kOfxParameterSuite, 1));
  gMemory = static_cast<const OfxMemorySuiteV1 *>(gHost->fetchSuite(gHost->host, kOfxMemorySuite, 1));
  gThreads = static_cast<const OfxMultiThreadSuiteV1 *>(gHost->fetchSuite(gHost->host, kOfxMultiThreadSuite, 1));
  gMessage2 = static_cast<const OfxMessageSuiteV2 *>(gHost->fetchSuite(gHost->host, kOfxMessageSuite, 2));
  gMessage1 = static_cast<const OfxMessageSuiteV1 *>(gHost->fetchSuite(gHost->host, kOfxMessageSuite, 1));
  if (!gProp || !gEffect || !gParam) return kOfxStatErrMissingHostFeature;
  gHostMultipleDepths = get_int(gHost->host, kOfxImageEffectPropSupportsMultipleClipDepths, 0, 0) != 0;
  return kOfxStatOK;
}

OfxStatus main_entry(const char *action, const void *handle, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  try {
    auto e = static_cast<OfxImageEffectHandle>(const_cast<void *>(handle));
    std::string a = action ? action : "";
    if (a == kOfxActionLoad) return load();
    if (a == kOfxActionUnload) {
      if (gBridge) gBridge->release();
      return kOfxStatOK;
    }
    if (a == kOfxActionDescribe) return describe(e);
    if (a == kOfxImageEffectActionDescribeInContext) return describe_in_context(e);
    if (a == kOfxActionCreateInstance) return create_instance(e);
    if (a == kOfxActionDestroyInstance) return destroy_instance(e);
    if (a == kOfxActionInstanceChanged) return instance_changed(e, in);
    if (a == kOfxImageEffectActionGetClipPreferences) return clip_preferences(e, out);
    if (a == kOfxImageEffectActionGetRegionsOfInterest) return regions_of_interest(e, in, out);
    if (a == kOfxImageEffectActionRender) return render(e, in);
    if (a == kOfxActionPurgeCaches) {
      if (Instance *inst = instance_of(e)) {
        std::lock_guard<std::mutex> lock(inst->cache_mu);
        std::vector<float>().swap(inst->cache);
        inst->cache_w = inst->cache_h = 0;
      }
      return kOfxStatOK;
    }
    return kOfxStatReplyDefault;
  } catch (const std::exception &ex) {  // never let an exception cross into the host
    std::fprintf(stderr, "hdrlift: internal error in %s: %s\n", action ? action : "?", ex.what());
    return kOfxStatErrFatal;
  } catch (...) {
    return kOfxStatErrFatal;
  }
}

void set_host(OfxHost *host) { gHost = host; }

OfxPlugin gPlugin = {kOfxImageEffectPluginApi, kOfxImageEffectPluginApiVersion, kPluginId, kVersionMajor,
                     kVersionMinor, set_host, main_entry};

}  // namespace

HDRLIFT_EXPORT int OfxGetNumberOfPlugins(void) { return 1; }
HDRLIFT_EXPORT OfxPlugin *OfxGetPlugin(int nth) { return nth == 0 ? &gPlugin : nullptr; }
