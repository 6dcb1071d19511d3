// ofxtesthost: a small OpenFX host that loads a plug-in bundle the way a host does and drives it
// through one job, for hdrlift's OFX tests (tests/ofx). Not a general host: one plug-in, one
// filter/general context, one source clip, time 0.
//
//   ofxtesthost JOB_FILE          (one directive per line, see parse_job; writes a JSON report)
//
// It implements the property, image effect, parameter, memory, multi-thread and message suites
// for real: typed property sets that refuse unknown properties and wrong types (recorded in the
// report), parameters that store values and send kOfxActionInstanceChanged when set, images with
// bottom-up rows (optionally negative rowBytes) in host-owned memory, a multi-thread suite that
// runs the plug-in's function on that many threads, and a message suite that records messages.
//
// The host itself links the system's gRPC and protobuf (global symbols, as a host that uses them
// would): with `host_grpc ADDRESS` it calls the server's health check and round-trips a protobuf
// message before loading the plug-in and after rendering, to show that both copies still work.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>

#include "ofxCore.h"
#include "ofxImageEffect.h"
#include "ofxMemory.h"
#include "ofxMessage.h"
#include "ofxMultiThread.h"
#include "ofxParam.h"
#include "ofxProperty.h"

namespace {

// ---------------------------------------------------------------- report
std::mutex gLogMu;
std::vector<std::string> gProblems;  // protocol violations by the plug-in
std::vector<std::string> gMessages;  // JSON objects
std::vector<std::string> gActions;   // JSON objects

std::string json_str(const std::string &s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += char(c);
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += char(c);
    }
  }
  return o + "\"";
}

void problem(const std::string &p) {
  std::lock_guard<std::mutex> l(gLogMu);
  if (gProblems.size() < 200) gProblems.push_back(p);
}

// ---------------------------------------------------------------- properties
enum class PType { Int, Double, String, Pointer };

struct Prop {
  PType type;
  bool read_only = false;
  std::vector<int> i;
  std::vector<double> d;
  std::vector<std::string> s;
  std::vector<void *> p;
  size_t size() const {
    switch (type) {
      case PType::Int: return i.size();
      case PType::Double: return d.size();
      case PType::String: return s.size();
      default: return p.size();
    }
  }
  void resize(size_t n) {
    switch (type) {
      case PType::Int: i.resize(n); break;
      case PType::Double: d.resize(n); break;
      case PType::String: s.resize(n); break;
      default: p.resize(n, nullptr);
    }
  }
};

struct PropertySet {
  std::string what;
  std::recursive_mutex mu;
  std::map<std::string, Prop> props;
  std::map<std::string, Prop> defaults;
  // strings handed out by propGetString stay valid until the property changes: keep old ones
  std::vector<std::unique_ptr<std::string>> keep;

  Prop &add(const std::string &name, PType t, bool ro = false) {
    Prop &p = props[name];
    p.type = t;
    p.read_only = ro;
    return p;
  }
  void i(const std::string &n, std::vector<int> v, bool ro = false) { add(n, PType::Int, ro).i = std::move(v); }
  void d(const std::string &n, std::vector<double> v, bool ro = false) { add(n, PType::Double, ro).d = std::move(v); }
  void s(const std::string &n, std::vector<std::string> v, bool ro = false) {
    add(n, PType::String, ro).s = std::move(v);
  }
  void p(const std::string &n, void *v, bool ro = false) { add(n, PType::Pointer, ro).p = {v}; }
  void snapshot_defaults() { defaults = props; }

  std::string get_s(const std::string &n, size_t k = 0) {
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = props.find(n);
    return it != props.end() && it->second.type == PType::String && k < it->second.s.size() ? it->second.s[k] : "";
  }
  int get_i(const std::string &n, size_t k = 0, int fb = 0) {
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = props.find(n);
    return it != props.end() && it->second.type == PType::Int && k < it->second.i.size() ? it->second.i[k] : fb;
  }
  std::vector<double> get_d(const std::string &n) {
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = props.find(n);
    return it != props.end() && it->second.type == PType::Double ? it->second.d : std::vector<double>{};
  }
  std::vector<std::string> get_ss(const std::string &n) {
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = props.find(n);
    return it != props.end() && it->second.type == PType::String ? it->second.s : std::vector<std::string>{};
  }
  void *get_p(const std::string &n) {
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = props.find(n);
    return it != props.end() && it->second.type == PType::Pointer && !it->second.p.empty() ? it->second.p[0]
                                                                                              : nullptr;
  }
};

PropertySet *PS(OfxPropertySetHandle h) { return reinterpret_cast<PropertySet *>(h); }
OfxPropertySetHandle H(PropertySet *p) { return reinterpret_cast<OfxPropertySetHandle>(p); }

// Finds a property for the plug-in, checking what a host checks.
OfxStatus lookup(OfxPropertySetHandle h, const char *name, PType t, bool write, Prop **out) {
  if (!h) return kOfxStatErrBadHandle;
  PropertySet *ps = PS(h);
  auto it = ps->props.find(name ? name : "");
  if (it == ps->props.end()) {
    if (write) problem(std::string("set unknown property ") + (name ? name : "?") + " on " + ps->what);
    return kOfxStatErrUnknown;
  }
  if (it->second.type != t) {
    problem(std::string(write ? "set " : "get ") + name + " with the wrong type on " + ps->what);
    return kOfxStatErrValue;
  }
  if (write && it->second.read_only) {
    problem(std::string("set read-only property ") + name + " on " + ps->what);
    return kOfxStatErrValue;
  }
  *out = &it->second;
  return kOfxStatOK;
}

#define LOCKED(h) std::lock_guard<std::recursive_mutex> lock_(PS(h)->mu)

template <class T, PType K>
OfxStatus set_one(OfxPropertySetHandle h, const char *n, int idx, T v, std::vector<T> Prop::*field) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  Prop *p;
  OfxStatus st = lookup(h, n, K, true, &p);
  if (st) return st;
  if (idx < 0) return kOfxStatErrBadIndex;
  if (size_t(idx) >= (p->*field).size()) p->resize(size_t(idx) + 1);
  (p->*field)[size_t(idx)] = v;
  return kOfxStatOK;
}

OfxStatus propSetPointer(OfxPropertySetHandle h, const char *n, int i, void *v) {
  return set_one<void *, PType::Pointer>(h, n, i, v, &Prop::p);
}
OfxStatus propSetString(OfxPropertySetHandle h, const char *n, int i, const char *v) {
  if (!v) return kOfxStatErrValue;
  return set_one<std::string, PType::String>(h, n, i, std::string(v), &Prop::s);
}
OfxStatus propSetDouble(OfxPropertySetHandle h, const char *n, int i, double v) {
  return set_one<double, PType::Double>(h, n, i, v, &Prop::d);
}
OfxStatus propSetInt(OfxPropertySetHandle h, const char *n, int i, int v) {
  return set_one<int, PType::Int>(h, n, i, v, &Prop::i);
}

template <class T, class In, PType K>
OfxStatus set_n(OfxPropertySetHandle h, const char *n, int count, const In *v, std::vector<T> Prop::*field) {
  if (!h) return kOfxStatErrBadHandle;
  if (count < 0 || (count > 0 && !v)) return kOfxStatErrValue;
  LOCKED(h);
  Prop *p;
  OfxStatus st = lookup(h, n, K, true, &p);
  if (st) return st;
  (p->*field).assign(v, v + count);  // the property now holds exactly these values
  return kOfxStatOK;
}

OfxStatus propSetPointerN(OfxPropertySetHandle h, const char *n, int c, void *const *v) {
  return set_n<void *, void *, PType::Pointer>(h, n, c, v, &Prop::p);
}
OfxStatus propSetStringN(OfxPropertySetHandle h, const char *n, int c, const char *const *v) {
  for (int k = 0; k < c && v; ++k)
    if (!v[k]) return kOfxStatErrValue;
  return set_n<std::string, const char *, PType::String>(h, n, c, v, &Prop::s);
}
OfxStatus propSetDoubleN(OfxPropertySetHandle h, const char *n, int c, const double *v) {
  return set_n<double, double, PType::Double>(h, n, c, v, &Prop::d);
}
OfxStatus propSetIntN(OfxPropertySetHandle h, const char *n, int c, const int *v) {
  return set_n<int, int, PType::Int>(h, n, c, v, &Prop::i);
}

OfxStatus propGetPointer(OfxPropertySetHandle h, const char *n, int i, void **v) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  Prop *p;
  OfxStatus st = lookup(h, n, PType::Pointer, false, &p);
  if (st) return st;
  if (i < 0 || size_t(i) >= p->p.size()) return kOfxStatErrBadIndex;
  *v = p->p[size_t(i)];
  return kOfxStatOK;
}
OfxStatus propGetString(OfxPropertySetHandle h, const char *n, int i, char **v) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  Prop *p;
  OfxStatus st = lookup(h, n, PType::String, false, &p);
  if (st) return st;
  if (i < 0 || size_t(i) >= p->s.size()) return kOfxStatErrBadIndex;
  PS(h)->keep.push_back(std::make_unique<std::string>(p->s[size_t(i)]));
  *v = const_cast<char *>(PS(h)->keep.back()->c_str());
  return kOfxStatOK;
}
OfxStatus propGetDouble(OfxPropertySetHandle h, const char *n, int i, double *v) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  Prop *p;
  OfxStatus st = lookup(h, n, PType::Double, false, &p);
  if (st) return st;
  if (i < 0 || size_t(i) >= p->d.size()) return kOfxStatErrBadIndex;
  *v = p->d[size_t(i)];
  return kOfxStatOK;
}
OfxStatus propGetInt(OfxPropertySetHandle h, const char *n, int i, int *v) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  Prop *p;
  OfxStatus st = lookup(h, n, PType::Int, false, &p);
  if (st) return st;
  if (i < 0 || size_t(i) >= p->i.size()) return kOfxStatErrBadIndex;
  *v = p->i[size_t(i)];
  return kOfxStatOK;
}
OfxStatus propGetPointerN(OfxPropertySetHandle h, const char *n, int c, void **v) {
  for (int k = 0; k < c; ++k)
    if (OfxStatus st = propGetPointer(h, n, k, v + k)) return st;
  return kOfxStatOK;
}
OfxStatus propGetStringN(OfxPropertySetHandle h, const char *n, int c, char **v) {
  for (int k = 0; k < c; ++k)
    if (OfxStatus st = propGetString(h, n, k, v + k)) return st;
  return kOfxStatOK;
}
OfxStatus propGetDoubleN(OfxPropertySetHandle h, const char *n, int c, double *v) {
  for (int k = 0; k < c; ++k)
    if (OfxStatus st = propGetDouble(h, n, k, v + k)) return st;
  return kOfxStatOK;
}
OfxStatus propGetIntN(OfxPropertySetHandle h, const char *n, int c, int *v) {
  for (int k = 0; k < c; ++k)
    if (OfxStatus st = propGetInt(h, n, k, v + k)) return st;
  return kOfxStatOK;
}
OfxStatus propReset(OfxPropertySetHandle h, const char *n) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  auto it = PS(h)->defaults.find(n ? n : "");
  if (it == PS(h)->defaults.end()) return kOfxStatErrUnknown;
  PS(h)->props[n] = it->second;
  return kOfxStatOK;
}
OfxStatus propGetDimension(OfxPropertySetHandle h, const char *n, int *count) {
  if (!h) return kOfxStatErrBadHandle;
  LOCKED(h);
  auto it = PS(h)->props.find(n ? n : "");
  if (it == PS(h)->props.end()) return kOfxStatErrUnknown;
  *count = int(it->second.size());
  return kOfxStatOK;
}

const OfxPropertySuiteV1 gPropertySuite = {
    propSetPointer,  propSetString,  propSetDouble,  propSetInt,     propSetPointerN,  propSetStringN,
    propSetDoubleN,  propSetIntN,    propGetPointer, propGetString,  propGetDouble,    propGetInt,
    propGetPointerN, propGetStringN, propGetDoubleN, propGetIntN,    propReset,        propGetDimension};

// ---------------------------------------------------------------- host objects
struct Effect;

struct Param {
  std::string name, type;
  PropertySet props;
  int ivalue = 0;
  double dvalue = 0;
  std::string svalue;
  Effect *owner = nullptr;
};

struct ParamSet {
  PropertySet props;
  std::vector<std::unique_ptr<Param>> params;
  Effect *owner = nullptr;
  Param *find(const std::string &n) {
    for (auto &p : params)
      if (p->name == n) return p.get();
    return nullptr;
  }
};

struct Buffer {  // pixels of one clip image in host memory
  int w = 0, h = 0, channels = 4, depth = 4;  // depth: bytes per sample
  std::vector<unsigned char> bytes;           // top row first, as the job's files
};

struct Clip {
  std::string name;
  PropertySet props;
  Effect *owner = nullptr;
};

struct Image {
  PropertySet props;
  std::vector<unsigned char> memory;
};

struct Effect {
  PropertySet props;
  ParamSet params;
  std::vector<std::unique_ptr<Clip>> clips;
  bool is_instance = false;
  int index = 0;
  std::atomic<int> abort_polls{0};
  std::atomic<bool> aborted{false};
  Clip *clip(const std::string &n) {
    for (auto &c : clips)
      if (c->name == n) return c.get();
    return nullptr;
  }
};

// ---------------------------------------------------------------- the job
struct Job {
  std::string bundle, context = kOfxImageEffectContextFilter, report, output, abort_file, colourspace, host_grpc;
  bool multiple_depths = true, negative_rows = false, parallel_tiles = false;
  int threads = 4, instances = 1, abort_after = -1, tile_w = 0, tile_h = 0;
  std::string input;
  int width = 0, height = 0, channels = 4;
  std::string depth = kOfxBitDepthFloat, premult = kOfxImagePreMultiplied;
  std::vector<std::pair<std::string, std::string>> params, edits;
};

Job gJob;
Buffer gInput;
OfxPlugin *gPlugin = nullptr;
PropertySet gHostProps;
OfxHost gHostStruct;
std::atomic<long> gLiveAllocs{0};
std::atomic<int> gThreadCalls{0}, gMaxThreads{0};
std::mutex gImagesMu;
std::map<PropertySet *, Image *> gLiveImages;  // handed-out images by their property set

OfxStatus call(const char *action, Effect *e, PropertySet *in, PropertySet *out, int instance = -1) {
  auto t0 = std::chrono::steady_clock::now();
  OfxStatus st = gPlugin->mainEntry(action, e, in ? H(in) : nullptr, out ? H(out) : nullptr);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream o;
  o << "{\"action\": " << json_str(action) << ", \"status\": " << st << ", \"ms\": " << ms
    << ", \"instance\": " << instance << "}";
  std::lock_guard<std::mutex> l(gLogMu);
  gActions.push_back(o.str());
  return st;
}

// ---------------------------------------------------------------- parameter suite
const std::set<std::string> kParamTypes = {kOfxParamTypeInteger, kOfxParamTypeDouble, kOfxParamTypeBoolean,
                                           kOfxParamTypeChoice,  kOfxParamTypeString, kOfxParamTypePushButton,
                                           kOfxParamTypeGroup,   kOfxParamTypePage};

void declare_param_props(Param &p) {
  PropertySet &ps = p.props;
  ps.what = "parameter " + p.name;
  ps.s(kOfxPropType, {kOfxTypeParameter}, true);
  ps.s(kOfxPropName, {p.name}, true);
  ps.s(kOfxPropLabel, {p.name});
  ps.s(kOfxPropShortLabel, {p.name});
  ps.s(kOfxPropLongLabel, {p.name});
  ps.s(kOfxParamPropType, {p.type}, true);
  ps.s(kOfxParamPropScriptName, {p.name});
  ps.s(kOfxParamPropHint, {""});
  ps.s(kOfxParamPropParent, {""});
  ps.s(kOfxParamPropCacheInvalidation, {kOfxParamInvalidateValueChange});
  ps.i(kOfxParamPropAnimates, {1});
  ps.i(kOfxParamPropIsAnimating, {0}, true);
  ps.i(kOfxParamPropPersistant, {1});
  ps.i(kOfxParamPropEvaluateOnChange, {1});
  ps.i(kOfxParamPropPluginMayWrite, {0});
  ps.i(kOfxParamPropSecret, {0});
  ps.i(kOfxParamPropEnabled, {1});
  ps.i(kOfxParamPropCanUndo, {1});
  ps.p(kOfxParamPropDataPtr, nullptr);
  const std::string &t = p.type;
  if (t == kOfxParamTypeInteger || t == kOfxParamTypeBoolean || t == kOfxParamTypeChoice) {
    ps.i(kOfxParamPropDefault, {0});
    if (t == kOfxParamTypeInteger) {
      ps.i(kOfxParamPropMin, {INT32_MIN});
      ps.i(kOfxParamPropMax, {INT32_MAX});
      ps.i(kOfxParamPropDisplayMin, {INT32_MIN});
      ps.i(kOfxParamPropDisplayMax, {INT32_MAX});
    }
    if (t == kOfxParamTypeChoice) ps.s(kOfxParamPropChoiceOption, {});
  } else if (t == kOfxParamTypeDouble) {
    ps.d(kOfxParamPropDefault, {0});
    ps.d(kOfxParamPropMin, {-1e300});
    ps.d(kOfxParamPropMax, {1e300});
    ps.d(kOfxParamPropDisplayMin, {-1e300});
    ps.d(kOfxParamPropDisplayMax, {1e300});
    ps.d(kOfxParamPropIncrement, {1});
    ps.i(kOfxParamPropDigits, {2});
    ps.s(kOfxParamPropDoubleType, {kOfxParamDoubleTypePlain});
  } else if (t == kOfxParamTypeString) {
    ps.s(kOfxParamPropDefault, {""});
    ps.s(kOfxParamPropStringMode, {kOfxParamStringIsSingleLine});
    ps.i(kOfxParamPropStringFilePathExists, {1});
  }
}

OfxStatus paramDefine(OfxParamSetHandle set, const char *type, const char *name, OfxPropertySetHandle *props) {
  auto *ps = reinterpret_cast<ParamSet *>(set);
  if (!ps || !type || !name) return kOfxStatErrBadHandle;
  if (!kParamTypes.count(type)) {
    problem(std::string("unsupported parameter type ") + type);
    return kOfxStatErrUnknown;
  }
  if (ps->find(name)) return kOfxStatErrExists;
  auto p = std::make_unique<Param>();
  p->name = name;
  p->type = type;
  declare_param_props(*p);
  if (props) *props = H(&p->props);
  ps->params.push_back(std::move(p));
  return kOfxStatOK;
}

OfxStatus paramGetHandle(OfxParamSetHandle set, const char *name, OfxParamHandle *param, OfxPropertySetHandle *props) {
  auto *ps = reinterpret_cast<ParamSet *>(set);
  if (!ps || !name) return kOfxStatErrBadHandle;
  Param *p = ps->find(name);
  if (!p) return kOfxStatErrUnknown;
  if (param) *param = reinterpret_cast<OfxParamHandle>(p);
  if (props) *props = H(&p->props);
  return kOfxStatOK;
}

OfxStatus paramSetGetPropertySet(OfxParamSetHandle set, OfxPropertySetHandle *props) {
  if (!set) return kOfxStatErrBadHandle;
  *props = H(&reinterpret_cast<ParamSet *>(set)->props);
  return kOfxStatOK;
}

OfxStatus paramGetPropertySet(OfxParamHandle param, OfxPropertySetHandle *props) {
  if (!param) return kOfxStatErrBadHandle;
  *props = H(&reinterpret_cast<Param *>(param)->props);
  return kOfxStatOK;
}

std::mutex gParamMu;  // values are read by render threads while the "UI" writes them

OfxStatus get_value(Param *p, va_list ap) {
  std::lock_guard<std::mutex> l(gParamMu);
  const std::string &t = p->type;
  if (t == kOfxParamTypeInteger || t == kOfxParamTypeBoolean || t == kOfxParamTypeChoice) {
    *va_arg(ap, int *) = p->ivalue;
  } else if (t == kOfxParamTypeDouble) {
    *va_arg(ap, double *) = p->dvalue;
  } else if (t == kOfxParamTypeString) {
    // valid until the value changes: hand out a copy kept with the parameter's properties
    std::lock_guard<std::recursive_mutex> k(p->props.mu);
    p->props.keep.push_back(std::make_unique<std::string>(p->svalue));
    *va_arg(ap, char **) = const_cast<char *>(p->props.keep.back()->c_str());
  } else {
    return kOfxStatErrUnsupported;
  }
  return kOfxStatOK;
}

OfxStatus paramGetValue(OfxParamHandle h, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, h);
  OfxStatus st = get_value(reinterpret_cast<Param *>(h), ap);
  va_end(ap);
  return st;
}

OfxStatus paramGetValueAtTime(OfxParamHandle h, OfxTime time, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, time);  // no animation here: every time has the stored value
  OfxStatus st = get_value(reinterpret_cast<Param *>(h), ap);
  va_end(ap);
  return st;
}

void instance_changed(Effect *e, const std::string &name, const char *reason);

OfxStatus set_value(Param *p, va_list ap, bool notify) {
  {
    std::lock_guard<std::mutex> l(gParamMu);
    const std::string &t = p->type;
    if (t == kOfxParamTypeInteger || t == kOfxParamTypeBoolean || t == kOfxParamTypeChoice) {
      int v = va_arg(ap, int);
      if (t == kOfxParamTypeChoice) {
        int n = int(p->props.get_ss(kOfxParamPropChoiceOption).size());
        if (v < 0 || v >= n) return kOfxStatErrValue;
      }
      p->ivalue = v;
    } else if (t == kOfxParamTypeDouble) {
      p->dvalue = va_arg(ap, double);
    } else if (t == kOfxParamTypeString) {
      const char *s = va_arg(ap, const char *);
      if (!s) return kOfxStatErrValue;
      p->svalue = s;
    } else {
      return kOfxStatErrUnsupported;
    }
  }
  if (notify && p->owner) instance_changed(p->owner, p->name, kOfxChangePluginEdited);
  return kOfxStatOK;
}

OfxStatus paramSetValue(OfxParamHandle h, ...) {
  if (!h) return kOfxStatErrBadHandle;
  va_list ap;
  va_start(ap, h);
  OfxStatus st = set_value(reinterpret_cast<Param *>(h), ap, true);
  va_end(ap);
  return st;
}

OfxStatus paramSetValueAtTime(OfxParamHandle h, OfxTime, ...) { return h ? kOfxStatErrUnsupported : kOfxStatErrBadHandle; }
OfxStatus paramGetDerivative(OfxParamHandle h, OfxTime, ...) { return h ? kOfxStatErrUnsupported : kOfxStatErrBadHandle; }
OfxStatus paramGetIntegral(OfxParamHandle h, OfxTime, OfxTime, ...) {
  return h ? kOfxStatErrUnsupported : kOfxStatErrBadHandle;
}
OfxStatus paramGetNumKeys(OfxParamHandle, unsigned int *n) {
  *n = 0;
  return kOfxStatOK;
}
OfxStatus paramGetKeyTime(OfxParamHandle, unsigned int, OfxTime *) { return kOfxStatErrBadIndex; }
OfxStatus paramGetKeyIndex(OfxParamHandle, OfxTime, int, int *) { return kOfxStatFailed; }
OfxStatus paramDeleteKey(OfxParamHandle, OfxTime) { return kOfxStatErrBadIndex; }
OfxStatus paramDeleteAllKeys(OfxParamHandle) { return kOfxStatOK; }
OfxStatus paramCopy(OfxParamHandle, OfxParamHandle, OfxTime, const OfxRangeD *) { return kOfxStatErrUnsupported; }
OfxStatus paramEditBegin(OfxParamSetHandle, const char *) { return kOfxStatOK; }
OfxStatus paramEditEnd(OfxParamSetHandle) { return kOfxStatOK; }

OfxParameterSuiteV1 gParamSuite = {paramDefine,      paramGetHandle,      paramSetGetPropertySet, paramGetPropertySet,
                                   paramGetValue,    paramGetValueAtTime, paramGetDerivative,     paramGetIntegral,
                                   paramSetValue,    paramSetValueAtTime, paramGetNumKeys,        paramGetKeyTime,
                                   paramGetKeyIndex, paramDeleteKey,      paramDeleteAllKeys,     paramCopy,
                                   paramEditBegin,   paramEditEnd};

// ---------------------------------------------------------------- image effect suite
thread_local OfxRectI tRenderWindow{0, 0, 0, 0};
thread_local std::vector<unsigned char> *tOutputTile = nullptr;
thread_local int tOutputChannels = 4;
std::mutex gRegionMu;
std::vector<std::string> gSourceRegions;  // regions the plug-in asked of the source, as JSON

Effect *EF(OfxImageEffectHandle h) { return reinterpret_cast<Effect *>(h); }

OfxStatus getPropertySet(OfxImageEffectHandle e, OfxPropertySetHandle *p) {
  if (!e || !p) return kOfxStatErrBadHandle;
  *p = H(&EF(e)->props);
  return kOfxStatOK;
}
OfxStatus getParamSet(OfxImageEffectHandle e, OfxParamSetHandle *p) {
  if (!e || !p) return kOfxStatErrBadHandle;
  *p = reinterpret_cast<OfxParamSetHandle>(&EF(e)->params);
  return kOfxStatOK;
}

void declare_clip_props(Clip &c, bool instance) {
  PropertySet &ps = c.props;
  ps.what = "clip " + c.name;
  ps.s(kOfxPropType, {kOfxTypeClip}, true);
  ps.s(kOfxPropName, {c.name}, true);
  ps.s(kOfxPropLabel, {c.name});
  ps.s(kOfxPropShortLabel, {c.name});
  ps.s(kOfxPropLongLabel, {c.name});
  ps.s(kOfxImageEffectPropSupportedComponents, {});
  ps.i(kOfxImageEffectPropTemporalClipAccess, {0});
  ps.i(kOfxImageClipPropOptional, {0});
  ps.s(kOfxImageClipPropFieldExtraction, {kOfxImageFieldDoubled});
  ps.i(kOfxImageClipPropIsMask, {0});
  ps.i(kOfxImageEffectPropSupportsTiles, {1});
  if (!instance) return;
  bool src = c.name == kOfxImageEffectSimpleSourceClipName;
  std::string comps = gJob.channels == 4 ? kOfxImageComponentRGBA : kOfxImageComponentRGB;
  ps.s(kOfxImageEffectPropPixelDepth, {src ? gJob.depth : kOfxBitDepthFloat}, true);
  ps.s(kOfxImageEffectPropComponents, {comps}, true);
  ps.s(kOfxImageClipPropUnmappedPixelDepth, {src ? gJob.depth : kOfxBitDepthFloat}, true);
  ps.s(kOfxImageClipPropUnmappedComponents, {comps}, true);
  ps.s(kOfxImageEffectPropPreMultiplication, {gJob.channels == 4 ? gJob.premult : kOfxImageOpaque}, true);
  ps.d(kOfxImagePropPixelAspectRatio, {1.0}, true);
  ps.d(kOfxImageEffectPropFrameRate, {24.0}, true);
  ps.d(kOfxImageEffectPropFrameRange, {0.0, 0.0}, true);
  ps.d(kOfxImageEffectPropUnmappedFrameRate, {24.0}, true);
  ps.d(kOfxImageEffectPropUnmappedFrameRange, {0.0, 0.0}, true);
  ps.s(kOfxImageClipPropFieldOrder, {kOfxImageFieldNone}, true);
  ps.i(kOfxImageClipPropConnected, {1}, true);
  ps.i(kOfxImageClipPropContinuousSamples, {0}, true);
  if (src && !gJob.colourspace.empty()) ps.s("OfxImageClipPropColourspace", {gJob.colourspace}, true);
}

OfxStatus clipDefine(OfxImageEffectHandle e, const char *name, OfxPropertySetHandle *props) {
  if (!e || !name) return kOfxStatErrBadHandle;
  Effect *ef = EF(e);
  if (ef->is_instance) {
    problem("clipDefine on an instance");
    return kOfxStatErrBadHandle;
  }
  if (ef->clip(name)) return kOfxStatErrExists;
  auto c = std::make_unique<Clip>();
  c->name = name;
  c->owner = ef;
  declare_clip_props(*c, false);
  if (props) *props = H(&c->props);
  ef->clips.push_back(std::move(c));
  return kOfxStatOK;
}

OfxStatus clipGetHandle(OfxImageEffectHandle e, const char *name, OfxImageClipHandle *clip, OfxPropertySetHandle *props) {
  if (!e || !name) return kOfxStatErrBadHandle;
  Clip *c = EF(e)->clip(name);
  if (!c) return kOfxStatErrUnknown;
  if (clip) *clip = reinterpret_cast<OfxImageClipHandle>(c);
  if (props) *props = H(&c->props);
  return kOfxStatOK;
}

OfxStatus clipGetPropertySet(OfxImageClipHandle clip, OfxPropertySetHandle *props) {
  if (!clip || !props) return kOfxStatErrBadHandle;
  *props = H(&reinterpret_cast<Clip *>(clip)->props);
  return kOfxStatOK;
}

int depth_bytes(const std::string &d) { return d == kOfxBitDepthByte ? 1 : d == kOfxBitDepthShort ? 2 : 4; }

float read_sample(const unsigned char *p, int depth) {
  if (depth == 1) return *p / 255.0f;
  if (depth == 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v / 65535.0f;
  }
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

void write_sample(unsigned char *p, int depth, float v) {
  if (depth == 1) {
    *p = (unsigned char)std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f);
  } else if (depth == 2) {
    uint16_t s = (uint16_t)std::lround(std::clamp(v, 0.0f, 1.0f) * 65535.0f);
    std::memcpy(p, &s, 2);
  } else {
    std::memcpy(p, &v, 4);
  }
}

// An image: `rows` top-first in `mem` (stride bytes each); the data pointer and rowBytes the
// plug-in sees address pixel (x1, y1) bottom-up, with negative rowBytes when the job asks.
void image_props(Image &img, const OfxRectI &b, int channels, const std::string &depth, const std::string &premult,
                 unsigned char *top_row, int stride) {
  PropertySet &ps = img.props;
  ps.what = "image";
  int h = b.y2 - b.y1;
  unsigned char *data;
  int row_bytes;
  // memory holds rows top first: the bottom row is the last one
  data = top_row + size_t(std::max(0, h - 1)) * size_t(stride);
  row_bytes = -stride;
  ps.s(kOfxPropType, {kOfxTypeImage}, true);
  ps.p(kOfxImagePropData, data, true);
  ps.i(kOfxImagePropBounds, {b.x1, b.y1, b.x2, b.y2}, true);
  ps.i(kOfxImagePropRegionOfDefinition, {0, 0, gJob.width, gJob.height}, true);
  ps.i(kOfxImagePropRowBytes, {row_bytes}, true);
  ps.s(kOfxImageEffectPropComponents, {channels == 4 ? kOfxImageComponentRGBA : kOfxImageComponentRGB}, true);
  ps.s(kOfxImageEffectPropPixelDepth, {depth}, true);
  ps.s(kOfxImageEffectPropPreMultiplication, {premult}, true);
  ps.d(kOfxImagePropPixelAspectRatio, {1.0}, true);
  ps.d(kOfxImageEffectPropRenderScale, {1.0, 1.0}, true);
  ps.s(kOfxImagePropField, {kOfxImageFieldNone}, true);
  ps.s(kOfxImagePropUniqueIdentifier, {"frame0"}, true);
}

OfxStatus clipGetImage(OfxImageClipHandle clip, OfxTime time, const OfxRectD *region, OfxPropertySetHandle *out) {
  if (!clip || !out) return kOfxStatErrBadHandle;
  Clip *c = reinterpret_cast<Clip *>(clip);
  if (time != 0.0) return kOfxStatFailed;
  auto img = std::make_unique<Image>();
  if (c->name == kOfxImageEffectSimpleSourceClipName) {
    {
      std::lock_guard<std::mutex> l(gRegionMu);
      std::ostringstream o;
      if (region)
        o << "[" << region->x1 << ", " << region->y1 << ", " << region->x2 << ", " << region->y2 << "]";
      else
        o << "null";
      gSourceRegions.push_back(o.str());
    }
    // the whole frame, in the depth the clip preferences mapped it to
    std::string depth = c->props.get_s(kOfxImageEffectPropPixelDepth);
    int db = depth_bytes(depth), ch = gJob.channels, sdb = depth_bytes(gJob.depth);
    int w = gJob.width, h = gJob.height, stride = w * ch * db;
    img->memory.resize(size_t(stride) * size_t(h));
    for (size_t k = 0; k < size_t(w) * size_t(h) * size_t(ch); ++k)
      write_sample(&img->memory[k * size_t(db)], db, read_sample(&gInput.bytes[k * size_t(sdb)], sdb));
    if (!gJob.negative_rows) {  // bottom row first in memory, positive rowBytes
      std::vector<unsigned char> flipped(img->memory.size());
      for (int r = 0; r < h; ++r)
        std::memcpy(&flipped[size_t(h - 1 - r) * size_t(stride)], &img->memory[size_t(r) * size_t(stride)], size_t(stride));
      img->memory.swap(flipped);
      image_props(*img, {0, 0, w, h}, ch, depth, c->props.get_s(kOfxImageEffectPropPreMultiplication),
                  img->memory.data(), stride);
      img->props.props[kOfxImagePropData].p[0] = img->memory.data();
      img->props.props[kOfxImagePropRowBytes].i[0] = stride;
    } else {
      image_props(*img, {0, 0, w, h}, ch, depth, c->props.get_s(kOfxImageEffectPropPreMultiplication),
                  img->memory.data(), stride);
    }
  } else if (c->name == kOfxImageEffectOutputClipName) {
    if (!tOutputTile) {
      problem("clipGetImage(Output) outside a render");
      return kOfxStatFailed;
    }
    const OfxRectI &b = tRenderWindow;
    int stride = (b.x2 - b.x1) * tOutputChannels * 4;
    image_props(*img, b, tOutputChannels, c->props.get_s(kOfxImageEffectPropPixelDepth),
                c->props.get_s(kOfxImageEffectPropPreMultiplication), tOutputTile->data(), stride);
    if (!gJob.negative_rows) {  // output tiles: bottom row first, positive rowBytes
      img->props.props[kOfxImagePropData].p[0] = tOutputTile->data();
      img->props.props[kOfxImagePropRowBytes].i[0] = stride;
    }
  } else {
    return kOfxStatErrBadHandle;
  }
  std::lock_guard<std::mutex> l(gImagesMu);
  gLiveImages[&img->props] = img.get();
  *out = H(&img.release()->props);
  return kOfxStatOK;
}

OfxStatus clipReleaseImage(OfxPropertySetHandle h) {
  if (!h) return kOfxStatErrBadHandle;
  std::lock_guard<std::mutex> l(gImagesMu);
  auto it = gLiveImages.find(PS(h));
  if (it == gLiveImages.end()) {
    problem("clipReleaseImage of an image not handed out (or released twice)");
    return kOfxStatErrBadHandle;
  }
  delete it->second;
  gLiveImages.erase(it);
  return kOfxStatOK;
}

OfxStatus clipGetRegionOfDefinition(OfxImageClipHandle clip, OfxTime, OfxRectD *rod) {
  if (!clip || !rod) return kOfxStatErrBadHandle;
  *rod = OfxRectD{0, 0, double(gJob.width), double(gJob.height)};
  return kOfxStatOK;
}

int abortFn(OfxImageEffectHandle e) {
  if (!e) return 0;
  Effect *ef = EF(e);
  int n = ++ef->abort_polls;
  if (gJob.abort_after >= 0 && n > gJob.abort_after) ef->aborted = true;
  if (!gJob.abort_file.empty() && access(gJob.abort_file.c_str(), F_OK) == 0) ef->aborted = true;
  return ef->aborted ? 1 : 0;
}

struct ImageMemory {
  std::vector<unsigned char> bytes;
  int locks = 0;
};
OfxStatus imageMemoryAlloc(OfxImageEffectHandle, size_t n, OfxImageMemoryHandle *h) {
  auto *m = new ImageMemory;
  m->bytes.resize(n);
  ++gLiveAllocs;
  *h = reinterpret_cast<OfxImageMemoryHandle>(m);
  return kOfxStatOK;
}
OfxStatus imageMemoryFree(OfxImageMemoryHandle h) {
  if (!h) return kOfxStatErrBadHandle;
  delete reinterpret_cast<ImageMemory *>(h);
  --gLiveAllocs;
  return kOfxStatOK;
}
OfxStatus imageMemoryLock(OfxImageMemoryHandle h, void **p) {
  if (!h) return kOfxStatErrBadHandle;
  auto *m = reinterpret_cast<ImageMemory *>(h);
  ++m->locks;
  *p = m->bytes.data();
  return kOfxStatOK;
}
OfxStatus imageMemoryUnlock(OfxImageMemoryHandle h) {
  if (!h) return kOfxStatErrBadHandle;
  --reinterpret_cast<ImageMemory *>(h)->locks;
  return kOfxStatOK;
}

const OfxImageEffectSuiteV1 gEffectSuite = {getPropertySet,   getParamSet,      clipDefine,       clipGetHandle,
                                            clipGetPropertySet, clipGetImage,   clipReleaseImage, clipGetRegionOfDefinition,
                                            abortFn,          imageMemoryAlloc, imageMemoryFree,  imageMemoryLock,
                                            imageMemoryUnlock};

// ---------------------------------------------------------------- memory suite
OfxStatus memoryAlloc(void *, size_t n, void **p) {
  if (!p) return kOfxStatErrBadHandle;
  *p = std::malloc(n ? n : 1);
  if (!*p) return kOfxStatErrMemory;
  ++gLiveAllocs;
  return kOfxStatOK;
}
OfxStatus memoryFree(void *p) {
  if (!p) return kOfxStatErrBadHandle;
  std::free(p);
  --gLiveAllocs;
  return kOfxStatOK;
}
const OfxMemorySuiteV1 gMemorySuite = {memoryAlloc, memoryFree};

// ---------------------------------------------------------------- multi-thread suite
thread_local unsigned tThreadIndex = 0;
thread_local bool tSpawned = false;

OfxStatus multiThread(OfxThreadFunctionV1 func, unsigned int n, void *arg) {
  if (!func) return kOfxStatErrBadHandle;
  if (n == 0) n = 1;
  ++gThreadCalls;
  int prev = gMaxThreads.load();
  while (int(n) > prev && !gMaxThreads.compare_exchange_weak(prev, int(n))) {
  }
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i)
    threads.emplace_back([=] {
      tThreadIndex = i;
      tSpawned = true;
      func(i, n, arg);
    });
  for (auto &t : threads) t.join();
  return kOfxStatOK;
}
OfxStatus multiThreadNumCPUs(unsigned int *n) {
  *n = unsigned(std::max(1, gJob.threads));
  return kOfxStatOK;
}
OfxStatus multiThreadIndex(unsigned int *i) {
  *i = tThreadIndex;
  return kOfxStatOK;
}
int multiThreadIsSpawnedThread(void) { return tSpawned ? 1 : 0; }
OfxStatus mutexCreate(OfxMutexHandle *m, int lockCount) {
  auto *mu = new std::recursive_mutex;
  for (int k = 0; k < lockCount; ++k) mu->lock();
  *m = reinterpret_cast<OfxMutexHandle>(mu);
  return kOfxStatOK;
}
OfxStatus mutexDestroy(const OfxMutexHandle m) {
  if (!m) return kOfxStatErrBadHandle;
  delete reinterpret_cast<std::recursive_mutex *>(m);
  return kOfxStatOK;
}
OfxStatus mutexLock(const OfxMutexHandle m) {
  if (!m) return kOfxStatErrBadHandle;
  reinterpret_cast<std::recursive_mutex *>(m)->lock();
  return kOfxStatOK;
}
OfxStatus mutexUnLock(const OfxMutexHandle m) {
  if (!m) return kOfxStatErrBadHandle;
  reinterpret_cast<std::recursive_mutex *>(m)->unlock();
  return kOfxStatOK;
}
OfxStatus mutexTryLock(const OfxMutexHandle m) {
  if (!m) return kOfxStatErrBadHandle;
  return reinterpret_cast<std::recursive_mutex *>(m)->try_lock() ? kOfxStatOK : kOfxStatFailed;
}
const OfxMultiThreadSuiteV1 gThreadSuite = {multiThread, multiThreadNumCPUs, multiThreadIndex,
                                            multiThreadIsSpawnedThread, mutexCreate, mutexDestroy,
                                            mutexLock, mutexUnLock, mutexTryLock};

// ---------------------------------------------------------------- message suite
int instance_index(void *handle) {
  return handle ? reinterpret_cast<Effect *>(handle)->index : -1;
}

void record_message(const char *kind, void *handle, const char *type, const char *id, const char *fmt, va_list ap) {
  char buf[8192];
  std::vsnprintf(buf, sizeof buf, fmt ? fmt : "", ap);
  std::ostringstream o;
  o << "{\"kind\": " << json_str(kind) << ", \"type\": " << json_str(type ? type : "")
    << ", \"id\": " << json_str(id ? id : "") << ", \"text\": " << json_str(buf)
    << ", \"instance\": " << instance_index(handle) << "}";
  std::lock_guard<std::mutex> l(gLogMu);
  gMessages.push_back(o.str());
}

OfxStatus message(void *handle, const char *type, const char *id, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record_message("message", handle, type, id, fmt, ap);
  va_end(ap);
  return kOfxStatOK;
}
OfxStatus setPersistentMessage(void *handle, const char *type, const char *id, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record_message("persistent", handle, type, id, fmt, ap);
  va_end(ap);
  return kOfxStatOK;
}
OfxStatus clearPersistentMessage(void *handle) {
  std::ostringstream o;
  o << "{\"kind\": \"clear\", \"instance\": " << instance_index(handle) << "}";
  std::lock_guard<std::mutex> l(gLogMu);
  gMessages.push_back(o.str());
  return kOfxStatOK;
}
const OfxMessageSuiteV1 gMessageSuite1 = {message};
const OfxMessageSuiteV2 gMessageSuite2 = {message, setPersistentMessage, clearPersistentMessage};

// ---------------------------------------------------------------- host
std::vector<std::string> gSuitesAsked;

const void *fetchSuite(OfxPropertySetHandle host, const char *name, int version) {
  if (host != H(&gHostProps)) problem("fetchSuite with a host handle that is not the host's");
  std::string n = name ? name : "";
  {
    std::lock_guard<std::mutex> l(gLogMu);
    gSuitesAsked.push_back(n + "/" + std::to_string(version));
  }
  if (n == kOfxPropertySuite && version == 1) return &gPropertySuite;
  if (n == kOfxImageEffectSuite && version == 1) return &gEffectSuite;
  if (n == kOfxParameterSuite && version == 1) return &gParamSuite;
  if (n == kOfxMemorySuite && version == 1) return &gMemorySuite;
  if (n == kOfxMultiThreadSuite && version == 1) return &gThreadSuite;
  if (n == kOfxMessageSuite && version == 1) return &gMessageSuite1;
  if (n == kOfxMessageSuite && version == 2) return &gMessageSuite2;
  return nullptr;
}

void declare_host_props() {
  PropertySet &h = gHostProps;
  h.what = "host";
  h.s(kOfxPropType, {kOfxTypeImageEffectHost}, true);
  h.s(kOfxPropName, {"org.hdrlift.ofxtesthost"}, true);
  h.s(kOfxPropLabel, {"hdrlift OFX test host"}, true);
  h.i(kOfxPropVersion, {1, 0, 0}, true);
  h.s(kOfxPropVersionLabel, {"1.0"}, true);
  h.i(kOfxPropAPIVersion, {1, 4}, true);
  h.i(kOfxImageEffectHostPropIsBackground, {1}, true);
  h.i(kOfxImageEffectPropSupportsOverlays, {0}, true);
  h.i(kOfxImageEffectPropSupportsMultiResolution, {1}, true);
  h.i(kOfxImageEffectPropSupportsTiles, {1}, true);
  h.i(kOfxImageEffectPropTemporalClipAccess, {0}, true);
  h.s(kOfxImageEffectPropSupportedComponents, {kOfxImageComponentRGBA, kOfxImageComponentRGB}, true);
  h.s(kOfxImageEffectPropSupportedContexts, {kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral}, true);
  h.s(kOfxImageEffectPropSupportedPixelDepths, {kOfxBitDepthByte, kOfxBitDepthShort, kOfxBitDepthFloat}, true);
  h.i(kOfxImageEffectPropSupportsMultipleClipDepths, {gJob.multiple_depths ? 1 : 0}, true);
  h.i(kOfxImageEffectPropSupportsMultipleClipPARs, {0}, true);
  h.i(kOfxImageEffectPropSetableFrameRate, {0}, true);
  h.i(kOfxImageEffectPropSetableFielding, {0}, true);
  h.i(kOfxParamHostPropSupportsCustomInteract, {0}, true);
  h.i(kOfxParamHostPropSupportsStringAnimation, {0}, true);
  h.i(kOfxParamHostPropSupportsChoiceAnimation, {0}, true);
  h.i(kOfxParamHostPropSupportsBooleanAnimation, {0}, true);
  h.i(kOfxParamHostPropSupportsCustomAnimation, {0}, true);
  h.i(kOfxParamHostPropMaxParameters, {-1}, true);
  h.i(kOfxParamHostPropMaxPages, {0}, true);
  h.i(kOfxParamHostPropPageRowColumnCount, {0, 0}, true);
}

void declare_effect_props(Effect &e, bool instance) {
  PropertySet &ps = e.props;
  ps.what = instance ? "effect instance" : "effect descriptor";
  ps.s(kOfxPropType, {instance ? kOfxTypeImageEffectInstance : kOfxTypeImageEffect}, true);
  ps.s(kOfxPropLabel, {""});
  ps.s(kOfxPropShortLabel, {""});
  ps.s(kOfxPropLongLabel, {""});
  ps.s(kOfxPropPluginDescription, {""});
  ps.i(kOfxPropVersion, {0});
  ps.s(kOfxPropVersionLabel, {""});
  ps.s(kOfxPropIcon, {"", ""});
  ps.s(kOfxImageEffectPluginPropGrouping, {""});
  ps.s(kOfxImageEffectPropSupportedContexts, {});
  ps.s(kOfxImageEffectPropSupportedPixelDepths, {});
  ps.i(kOfxImageEffectPluginPropSingleInstance, {0});
  ps.s(kOfxImageEffectPluginRenderThreadSafety, {kOfxImageEffectRenderInstanceSafe});
  ps.i(kOfxImageEffectPluginPropHostFrameThreading, {1});
  ps.i(kOfxImageEffectPropSupportsMultiResolution, {1});
  ps.i(kOfxImageEffectPropSupportsTiles, {1});
  ps.i(kOfxImageEffectPropTemporalClipAccess, {0});
  ps.i(kOfxImageEffectPropSupportsMultipleClipDepths, {0});
  ps.i(kOfxImageEffectPropSupportsMultipleClipPARs, {0});
  ps.s(kOfxImageEffectPropClipPreferencesSlaveParam, {});
  ps.p(kOfxImageEffectPluginPropOverlayInteractV1, nullptr);
  ps.s(kOfxPluginPropFilePath, {gJob.bundle}, true);
  ps.s(kOfxImageEffectPropContext, {gJob.context}, true);
  if (!instance) return;
  ps.p(kOfxPropInstanceData, nullptr);
  ps.d(kOfxImageEffectPropProjectSize, {double(gJob.width), double(gJob.height)}, true);
  ps.d(kOfxImageEffectPropProjectOffset, {0, 0}, true);
  ps.d(kOfxImageEffectPropProjectExtent, {double(gJob.width), double(gJob.height)}, true);
  ps.d(kOfxImageEffectPropProjectPixelAspectRatio, {1.0}, true);
  ps.d(kOfxImageEffectInstancePropEffectDuration, {1.0}, true);
  ps.i(kOfxImageEffectInstancePropSequentialRender, {0});
  ps.d(kOfxImageEffectPropFrameRate, {24.0}, true);
  ps.i(kOfxPropIsInteractive, {0}, true);
}

void instance_changed(Effect *e, const std::string &name, const char *reason) {
  PropertySet in;
  in.what = "instance changed args";
  in.s(kOfxPropType, {kOfxTypeParameter}, true);
  in.s(kOfxPropName, {name}, true);
  in.s(kOfxPropChangeReason, {reason}, true);
  in.d(kOfxPropTime, {0.0}, true);
  in.d(kOfxImageEffectPropRenderScale, {1.0, 1.0}, true);
  PropertySet bin;
  bin.what = "begin instance changed args";
  bin.s(kOfxPropChangeReason, {reason}, true);
  call(kOfxActionBeginInstanceChanged, e, &bin, nullptr, e->index);
  call(kOfxActionInstanceChanged, e, &in, nullptr, e->index);
  call(kOfxActionEndInstanceChanged, e, &bin, nullptr, e->index);
}

// ---------------------------------------------------------------- the host's own gRPC / protobuf
std::string host_grpc_check(const std::string &address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Slice empty("", 0);
  grpc::ByteBuffer request(&empty, 1), reply;
  grpc::internal::RpcMethod method("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::Status st = grpc::internal::BlockingUnaryCall(channel.get(), method, &ctx, request, &reply);
  if (!st.ok()) return "grpc error " + std::to_string(int(st.error_code())) + ": " + st.error_message();
  std::vector<grpc::Slice> slices;
  reply.Dump(&slices);
  std::string bytes;
  for (auto &s : slices) bytes.append(reinterpret_cast<const char *>(s.begin()), s.size());
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t *>(bytes.data()), int(bytes.size()));
  uint32_t status = 0;
  if (in.ReadTag() != 8 || !in.ReadVarint32(&status)) return "unparsable health reply";
  google::protobuf::Timestamp ts, back;
  ts.set_seconds(1234567);
  ts.set_nanos(89);
  if (!back.ParseFromString(ts.SerializeAsString()) || back.seconds() != 1234567 || back.nanos() != 89)
    return "protobuf round trip failed";
  return status == 1 ? "SERVING" : "status " + std::to_string(status);
}

std::vector<std::string> mapped_rpc_libraries() {
  std::ifstream f("/proc/self/maps");
  std::set<std::string> out;
  std::string line;
  while (std::getline(f, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    std::string base = path.substr(path.find_last_of('/') + 1);
    if (base.find("grpc") != std::string::npos || base.find("protobuf") != std::string::npos ||
        base.find("absl") != std::string::npos || base.find("ssl") != std::string::npos)
      out.insert(path);
  }
  return {out.begin(), out.end()};
}

// ---------------------------------------------------------------- job file
bool parse_job(const char *path, std::string *err) {
  std::ifstream f(path);
  if (!f) {
    *err = std::string("cannot read ") + path;
    return false;
  }
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string key;
    if (!(in >> key) || key[0] == '#') continue;
    std::string rest;
    std::getline(in >> std::ws, rest);
    std::istringstream r(rest);
    if (key == "bundle") gJob.bundle = rest;
    else if (key == "context") gJob.context = rest == "general" ? kOfxImageEffectContextGeneral : kOfxImageEffectContextFilter;
    else if (key == "multiple_depths") gJob.multiple_depths = rest == "1";
    else if (key == "threads") gJob.threads = std::stoi(rest);
    else if (key == "instances") gJob.instances = std::stoi(rest);
    else if (key == "abort_after") gJob.abort_after = std::stoi(rest);
    else if (key == "abort_file") gJob.abort_file = rest;
    else if (key == "colourspace") gJob.colourspace = rest;
    else if (key == "host_grpc") gJob.host_grpc = rest;
    else if (key == "report") gJob.report = rest;
    else if (key == "output") gJob.output = rest;
    else if (key == "negative_rows") gJob.negative_rows = rest == "1";
    else if (key == "tiles") {
      r >> gJob.tile_w >> gJob.tile_h;
      std::string mode;
      r >> mode;
      gJob.parallel_tiles = mode == "parallel";
    } else if (key == "input") {  // PATH W H CHANNELS DEPTH PREMULT (path without spaces)
      std::string depth, premult;
      r >> gJob.input >> gJob.width >> gJob.height >> gJob.channels >> depth >> premult;
      gJob.depth = depth == "byte" ? kOfxBitDepthByte : depth == "short" ? kOfxBitDepthShort : kOfxBitDepthFloat;
      gJob.premult = premult == "premult" ? kOfxImagePreMultiplied
                     : premult == "unpremult" ? kOfxImageUnPreMultiplied
                                              : kOfxImageOpaque;
    } else if (key == "param" || key == "edit") {  // NAME VALUE (value: the rest of the line)
      std::string name, value;
      r >> name;
      std::getline(r >> std::ws, value);
      (key == "param" ? gJob.params : gJob.edits).emplace_back(name, value);
    } else {
      *err = "unknown directive " + key;
      return false;
    }
  }
  if (gJob.bundle.empty() || gJob.report.empty()) {
    *err = "the job needs bundle and report";
    return false;
  }
  return true;
}

bool load_input(std::string *err) {
  if (gJob.input.empty()) return true;
  gInput.w = gJob.width;
  gInput.h = gJob.height;
  gInput.channels = gJob.channels;
  gInput.depth = depth_bytes(gJob.depth);
  std::ifstream f(gJob.input, std::ios::binary);
  gInput.bytes.assign(std::istreambuf_iterator<char>(f), {});
  size_t want = size_t(gJob.width) * size_t(gJob.height) * size_t(gJob.channels) * size_t(gInput.depth);
  if (gInput.bytes.size() != want) {
    *err = "input has " + std::to_string(gInput.bytes.size()) + " bytes, expected " + std::to_string(want);
    return false;
  }
  return true;
}

void set_param_text(Param *p, const std::string &v) {
  std::lock_guard<std::mutex> l(gParamMu);
  if (p->type == kOfxParamTypeString)
    p->svalue = v;
  else if (p->type == kOfxParamTypeDouble)
    p->dvalue = std::stod(v);
  else
    p->ivalue = std::stoi(v);
}

std::string json_list(const std::vector<std::string> &v, bool quote) {
  std::string o = "[";
  for (size_t k = 0; k < v.size(); ++k) o += (k ? ", " : "") + (quote ? json_str(v[k]) : v[k]);
  return o + "]";
}

struct InstanceResult {
  std::string clip_prefs, roi, params, out_premult;
  std::vector<int> render_status;
  int out_channels = 0, abort_polls = 0;
  double render_ms = 0;
};

// Renders one instance (whole frame, or tiles, maybe on several threads) and writes its output.
void render_instance(Effect *e, InstanceResult *res, const std::string &out_path) {
  const int W = gJob.width, H = gJob.height, ch = res->out_channels;
  std::vector<float> canvas(size_t(W) * size_t(H) * size_t(ch), -7.0f);  // -7: never written
  std::vector<OfxRectI> windows;
  if (gJob.tile_w > 0 && gJob.tile_h > 0) {
    for (int y = 0; y < H; y += gJob.tile_h)
      for (int x = 0; x < W; x += gJob.tile_w)
        windows.push_back({x, y, std::min(W, x + gJob.tile_w), std::min(H, y + gJob.tile_h)});
  } else {
    windows.push_back({0, 0, W, H});
  }
  std::mutex mu;
  size_t next = 0;
  std::vector<int> statuses(windows.size(), -1);
  auto worker = [&] {
    for (;;) {
      size_t k;
      {
        std::lock_guard<std::mutex> l(mu);
        if (next >= windows.size()) return;
        k = next++;
      }
      const OfxRectI b = windows[k];
      const int tw = b.x2 - b.x1, th = b.y2 - b.y1, stride = tw * ch;
      std::vector<unsigned char> tile(size_t(tw) * size_t(th) * size_t(ch) * 4);
      std::vector<float> sentinel(size_t(tw) * size_t(th) * size_t(ch), -7.0f);
      std::memcpy(tile.data(), sentinel.data(), tile.size());
      tRenderWindow = b;
      tOutputTile = &tile;
      tOutputChannels = ch;
      PropertySet in;
      in.what = "render args";
      in.d(kOfxPropTime, {0.0}, true);
      in.s(kOfxImageEffectPropFieldToRender, {kOfxImageFieldNone}, true);
      in.i(kOfxImageEffectPropRenderWindow, {b.x1, b.y1, b.x2, b.y2}, true);
      in.d(kOfxImageEffectPropRenderScale, {1.0, 1.0}, true);
      in.i(kOfxImageEffectPropSequentialRenderStatus, {0}, true);
      in.i(kOfxImageEffectPropInteractiveRenderStatus, {0}, true);
      in.i(kOfxImageEffectPropRenderQualityDraft, {0}, true);
      statuses[k] = call(kOfxImageEffectActionRender, e, &in, nullptr, e->index);
      tOutputTile = nullptr;
      // the tile's rows: bottom first in memory (or top first with negative rowBytes)
      const float *px = reinterpret_cast<const float *>(tile.data());
      for (int r = 0; r < th; ++r) {
        int y = b.y1 + r;                                   // OFX row (bottom-up)
        int mem_row = gJob.negative_rows ? th - 1 - r : r;  // where that row lies in `tile`
        int top = H - 1 - y;                                // row in the output file (top first)
        std::memcpy(&canvas[(size_t(top) * size_t(W) + size_t(b.x1)) * size_t(ch)], px + size_t(mem_row) * size_t(stride),
                    size_t(stride) * sizeof(float));
      }
    }
  };
  auto t0 = std::chrono::steady_clock::now();
  PropertySet seq;
  seq.what = "sequence render args";
  seq.d(kOfxImageEffectPropFrameRange, {0.0, 0.0}, true);
  seq.d(kOfxImageEffectPropFrameStep, {1.0}, true);
  seq.i(kOfxPropIsInteractive, {0}, true);
  seq.d(kOfxImageEffectPropRenderScale, {1.0, 1.0}, true);
  seq.i(kOfxImageEffectPropSequentialRenderStatus, {0}, true);
  seq.i(kOfxImageEffectPropInteractiveRenderStatus, {0}, true);
  call(kOfxImageEffectActionBeginSequenceRender, e, &seq, nullptr, e->index);
  std::string safety = e->props.get_s(kOfxImageEffectPluginRenderThreadSafety);
  int n = gJob.parallel_tiles && safety == kOfxImageEffectRenderFullySafe ? 3 : 1;
  std::vector<std::thread> threads;
  for (int k = 1; k < n; ++k) threads.emplace_back(worker);
  worker();
  for (auto &t : threads) t.join();
  call(kOfxImageEffectActionEndSequenceRender, e, &seq, nullptr, e->index);
  res->render_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  res->render_status = statuses;
  res->abort_polls = e->abort_polls;
  if (!out_path.empty()) {
    std::ofstream o(out_path, std::ios::binary);
    o.write(reinterpret_cast<const char *>(canvas.data()), std::streamsize(canvas.size() * sizeof(float)));
  }
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: ofxtesthost JOB_FILE\n");
    return 2;
  }
  std::string err;
  if (!parse_job(argv[1], &err) || !load_input(&err)) {
    std::fprintf(stderr, "ofxtesthost: %s\n", err.c_str());
    return 2;
  }
  std::ostringstream rep;
  rep << "{";
  std::string grpc_before, grpc_after;
  if (!gJob.host_grpc.empty()) grpc_before = host_grpc_check(gJob.host_grpc);

  // load the bundle's binary as a host does
  std::string binary = gJob.bundle + "/Contents/Linux-x86-64/hdrlift.ofx";
  void *lib = dlopen(binary.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "ofxtesthost: dlopen: %s\n", dlerror());
    return 3;
  }
  auto count_fn = reinterpret_cast<int (*)(void)>(dlsym(lib, "OfxGetNumberOfPlugins"));
  auto get_fn = reinterpret_cast<OfxPlugin *(*)(int)>(dlsym(lib, "OfxGetPlugin"));
  if (!count_fn || !get_fn) {
    std::fprintf(stderr, "ofxtesthost: the binary lacks the OFX entry points\n");
    return 3;
  }
  int nplugins = count_fn();
  gPlugin = nplugins > 0 ? get_fn(0) : nullptr;
  if (!gPlugin || std::string(gPlugin->pluginApi) != kOfxImageEffectPluginApi ||
      gPlugin->apiVersion != kOfxImageEffectPluginApiVersion) {
    std::fprintf(stderr, "ofxtesthost: no image effect plug-in (API %s)\n", gPlugin ? gPlugin->pluginApi : "?");
    return 3;
  }
  rep << "\"plugins\": " << nplugins << ", \"id\": " << json_str(gPlugin->pluginIdentifier)
      << ", \"version\": [" << gPlugin->pluginVersionMajor << ", " << gPlugin->pluginVersionMinor << "]";
  declare_host_props();
  gHostStruct.host = H(&gHostProps);
  gHostStruct.fetchSuite = fetchSuite;
  gPlugin->setHost(&gHostStruct);

  int st_load = call(kOfxActionLoad, nullptr, nullptr, nullptr);
  auto descriptor = std::make_unique<Effect>();
  declare_effect_props(*descriptor, false);
  descriptor->params.owner = nullptr;
  descriptor->params.props.what = "parameter set";
  int st_describe = call(kOfxActionDescribe, descriptor.get(), nullptr, nullptr);
  PropertySet ctx_args;
  ctx_args.what = "describe in context args";
  ctx_args.s(kOfxImageEffectPropContext, {gJob.context}, true);
  int st_context = call(kOfxImageEffectActionDescribeInContext, descriptor.get(), &ctx_args, nullptr);
  PropertySet &dp = descriptor->props;
  rep << ", \"descriptor\": {\"label\": " << json_str(dp.get_s(kOfxPropLabel))
      << ", \"grouping\": " << json_str(dp.get_s(kOfxImageEffectPluginPropGrouping))
      << ", \"contexts\": " << json_list(dp.get_ss(kOfxImageEffectPropSupportedContexts), true)
      << ", \"depths\": " << json_list(dp.get_ss(kOfxImageEffectPropSupportedPixelDepths), true)
      << ", \"icon\": " << json_list(dp.get_ss(kOfxPropIcon), true)
      << ", \"thread_safety\": " << json_str(dp.get_s(kOfxImageEffectPluginRenderThreadSafety))
      << ", \"tiles\": " << dp.get_i(kOfxImageEffectPropSupportsTiles)
      << ", \"multiple_depths\": " << dp.get_i(kOfxImageEffectPropSupportsMultipleClipDepths)
      << ", \"multi_resolution\": " << dp.get_i(kOfxImageEffectPropSupportsMultiResolution)
      << ", \"host_frame_threading\": " << dp.get_i(kOfxImageEffectPluginPropHostFrameThreading)
      << ", \"clip_prefs_slave\": " << json_list(dp.get_ss(kOfxImageEffectPropClipPreferencesSlaveParam), true)
      << ", \"clips\": [";
  for (size_t k = 0; k < descriptor->clips.size(); ++k)
    rep << (k ? ", " : "") << "{\"name\": " << json_str(descriptor->clips[k]->name) << ", \"components\": "
        << json_list(descriptor->clips[k]->props.get_ss(kOfxImageEffectPropSupportedComponents), true)
        << ", \"tiles\": " << descriptor->clips[k]->props.get_i(kOfxImageEffectPropSupportsTiles) << "}";
  rep << "], \"params\": {";
  for (size_t k = 0; k < descriptor->params.params.size(); ++k) {
    Param &p = *descriptor->params.params[k];
    rep << (k ? ", " : "") << json_str(p.name) << ": {\"type\": " << json_str(p.type)
        << ", \"label\": " << json_str(p.props.get_s(kOfxPropLabel))
        << ", \"options\": " << json_list(p.props.get_ss(kOfxParamPropChoiceOption), true) << "}";
  }
  rep << "}}";
  rep << ", \"load\": " << st_load << ", \"describe\": " << st_describe << ", \"describe_in_context\": " << st_context;

  std::vector<std::unique_ptr<Effect>> instances;
  std::vector<InstanceResult> results(size_t(std::max(0, gJob.instances)));
  bool ok = st_load == kOfxStatOK && st_describe == kOfxStatOK && st_context == kOfxStatOK;
  for (int i = 0; ok && i < gJob.instances; ++i) {
    auto e = std::make_unique<Effect>();
    e->is_instance = true;
    e->index = i;
    declare_effect_props(*e, true);
    for (auto &kv : descriptor->props.props)  // what the plug-in described, as the instance's
      if (!kv.second.read_only && kv.first != kOfxPropType) e->props.props[kv.first] = kv.second;
    for (auto &dc : descriptor->clips) {
      auto c = std::make_unique<Clip>();
      c->name = dc->name;
      c->owner = e.get();
      declare_clip_props(*c, true);
      c->props.props[kOfxImageEffectPropSupportedComponents] = dc->props.props[kOfxImageEffectPropSupportedComponents];
      e->clips.push_back(std::move(c));
    }
    e->params.owner = e.get();
    e->params.props.what = "parameter set";
    for (auto &dpar : descriptor->params.params) {
      auto p = std::make_unique<Param>();
      p->name = dpar->name;
      p->type = dpar->type;
      {
        std::lock_guard<std::recursive_mutex> l(dpar->props.mu);
        p->props.props = dpar->props.props;
      }
      p->props.what = "parameter " + p->name;
      p->props.snapshot_defaults();
      Prop &def = p->props.props[kOfxParamPropDefault];
      if (!def.i.empty()) p->ivalue = def.i[0];
      if (!def.d.empty()) p->dvalue = def.d[0];
      if (!def.s.empty()) p->svalue = def.s[0];
      p->owner = e.get();
      e->params.params.push_back(std::move(p));
    }
    for (auto &kv : gJob.params) {  // values a saved project would bring
      Param *p = e->params.find(kv.first);
      if (!p) {
        std::fprintf(stderr, "ofxtesthost: no parameter %s\n", kv.first.c_str());
        return 2;
      }
      set_param_text(p, kv.second);
    }
    if (call(kOfxActionCreateInstance, e.get(), nullptr, nullptr, i) != kOfxStatOK) ok = false;
    instances.push_back(std::move(e));
  }
  for (auto &e : instances) {  // what a user types after the node exists
    for (auto &kv : gJob.edits) {
      Param *p = e->params.find(kv.first);
      if (!p) {
        std::fprintf(stderr, "ofxtesthost: no parameter %s\n", kv.first.c_str());
        return 2;
      }
      set_param_text(p, kv.second);
      instance_changed(e.get(), kv.first, kOfxChangeUserEdited);
    }
  }
  for (size_t i = 0; ok && i < instances.size(); ++i) {
    Effect *e = instances[i].get();
    InstanceResult &res = results[i];
    // clip preferences: defaults from the clips, then what the plug-in asks for
    PropertySet out;
    out.what = "clip preferences out args";
    for (auto &c : e->clips) {
      out.s("OfxImageClipPropComponents_" + c->name, {c->props.get_s(kOfxImageEffectPropComponents)});
      out.s("OfxImageClipPropDepth_" + c->name, {c->props.get_s(kOfxImageEffectPropPixelDepth)});
      out.d("OfxImageClipPropPAR_" + c->name, {1.0});
    }
    out.s(kOfxImageEffectPropPreMultiplication, {gJob.channels == 4 ? gJob.premult : kOfxImageOpaque});
    out.s(kOfxImageClipPropFieldOrder, {kOfxImageFieldNone});
    out.d(kOfxImageEffectPropFrameRate, {24.0});
    out.i(kOfxImageClipPropContinuousSamples, {0});
    out.i(kOfxImageEffectFrameVarying, {0});
    int st = call(kOfxImageEffectActionGetClipPreferences, e, nullptr, &out, int(i));
    std::vector<std::string> depths = descriptor->props.get_ss(kOfxImageEffectPropSupportedPixelDepths);
    std::set<std::string> used;
    for (auto &c : e->clips) {
      std::string d = out.get_s("OfxImageClipPropDepth_" + c->name);
      std::string comps = out.get_s("OfxImageClipPropComponents_" + c->name);
      if (std::find(depths.begin(), depths.end(), d) == depths.end()) problem("clip preferences: unsupported depth " + d);
      used.insert(d);
      std::lock_guard<std::recursive_mutex> l(c->props.mu);
      c->props.props[kOfxImageEffectPropPixelDepth].s = {d};
      c->props.props[kOfxImageEffectPropComponents].s = {comps};
    }
    if (!gJob.multiple_depths && used.size() > 1) problem("clip preferences: several depths on a host without them");
    Clip *oc = e->clip(kOfxImageEffectOutputClipName);
    res.out_premult = out.get_s(kOfxImageEffectPropPreMultiplication);
    oc->props.props[kOfxImageEffectPropPreMultiplication].s = {res.out_premult};
    res.out_channels = out.get_s("OfxImageClipPropComponents_Output") == kOfxImageComponentRGB ? 3 : 4;
    std::ostringstream cp;
    cp << "{\"status\": " << st << ", \"source_depth\": "
       << json_str(out.get_s("OfxImageClipPropDepth_" + std::string(kOfxImageEffectSimpleSourceClipName)))
       << ", \"output_depth\": " << json_str(out.get_s("OfxImageClipPropDepth_Output"))
       << ", \"output_components\": " << json_str(out.get_s("OfxImageClipPropComponents_Output"))
       << ", \"output_premult\": " << json_str(res.out_premult) << "}";
    res.clip_prefs = cp.str();
    // regions of interest for the whole output
    PropertySet rin, rout;
    rin.what = "regions of interest args";
    rin.d(kOfxPropTime, {0.0}, true);
    rin.d(kOfxImageEffectPropRenderScale, {1.0, 1.0}, true);
    rin.d(kOfxImageEffectPropRegionOfInterest, {0, 0, double(gJob.width) / 2, double(gJob.height) / 2}, true);
    rout.what = "regions of interest out args";
    rout.d("OfxImageClipPropRoI_Source", {0, 0, double(gJob.width) / 2, double(gJob.height) / 2});
    int rst = call(kOfxImageEffectActionGetRegionsOfInterest, e, &rin, &rout, int(i));
    std::vector<double> roi = rout.get_d("OfxImageClipPropRoI_Source");
    std::ostringstream ro;
    ro << "{\"status\": " << rst << ", \"source\": [";
    for (size_t k = 0; k < roi.size(); ++k) ro << (k ? ", " : "") << roi[k];
    ro << "]}";
    res.roi = ro.str();
  }
  // render: each instance on its own thread (two instances render at once)
  if (ok && !gJob.input.empty()) {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < instances.size(); ++i) {
      std::string path = gJob.output.empty() ? ""
                         : instances.size() == 1 ? gJob.output
                                                 : gJob.output + "." + std::to_string(i);
      threads.emplace_back(render_instance, instances[i].get(), &results[i], path);
    }
    for (auto &t : threads) t.join();
  }
  for (size_t i = 0; i < instances.size(); ++i) {
    Effect *e = instances[i].get();
    std::ostringstream pv;
    pv << "{";
    for (size_t k = 0; k < e->params.params.size(); ++k) {
      Param &p = *e->params.params[k];
      pv << (k ? ", " : "") << json_str(p.name) << ": ";
      if (p.type == kOfxParamTypeString)
        pv << json_str(p.svalue);
      else if (p.type == kOfxParamTypeDouble)
        pv << p.dvalue;
      else
        pv << p.ivalue;
    }
    pv << ", \"modelMenu.options\": " << json_list(e->params.find("modelMenu") ? e->params.find("modelMenu")->props.get_ss(kOfxParamPropChoiceOption) : std::vector<std::string>{}, true) << "}";
    results[i].params = pv.str();
    call(kOfxActionDestroyInstance, e, nullptr, nullptr, int(i));
  }
  int st_unload = call(kOfxActionUnload, nullptr, nullptr, nullptr);
  if (!gJob.host_grpc.empty()) grpc_after = host_grpc_check(gJob.host_grpc);

  rep << ", \"unload\": " << st_unload << ", \"instances\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    InstanceResult &r = results[i];
    rep << (i ? ", " : "") << "{\"clip_prefs\": " << (r.clip_prefs.empty() ? "null" : r.clip_prefs)
        << ", \"roi\": " << (r.roi.empty() ? "null" : r.roi) << ", \"params\": " << (r.params.empty() ? "null" : r.params)
        << ", \"render_status\": [";
    for (size_t k = 0; k < r.render_status.size(); ++k) rep << (k ? ", " : "") << r.render_status[k];
    rep << "], \"render_ms\": " << r.render_ms << ", \"abort_polls\": " << r.abort_polls
        << ", \"out_channels\": " << r.out_channels << "}";
  }
  rep << "], \"actions\": " << json_list(gActions, false) << ", \"messages\": " << json_list(gMessages, false)
      << ", \"problems\": " << json_list(gProblems, true) << ", \"suites\": " << json_list(gSuitesAsked, true)
      << ", \"source_regions\": " << json_list(gSourceRegions, false) << ", \"live_allocations\": " << gLiveAllocs.load()
      << ", \"live_images\": " << gLiveImages.size() << ", \"multithread_calls\": " << gThreadCalls.load()
      << ", \"max_threads\": " << gMaxThreads.load() << ", \"host_grpc_before\": " << json_str(grpc_before)
      << ", \"host_grpc_after\": " << json_str(grpc_after) << ", \"mapped\": " << json_list(mapped_rpc_libraries(), true)
      << "}\n";
  std::ofstream(gJob.report) << rep.str();
  dlclose(lib);
  return 0;
}
