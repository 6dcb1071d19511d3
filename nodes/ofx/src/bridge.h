/* The C interface between the OFX plug-in (hdrlift.ofx) and its private gRPC library
 * (lib/libhdrlift_grpc.so inside the bundle).
 *
 * The plug-in binary links nothing but the C/C++ runtime; it dlopen()s the private library with
 * RTLD_LOCAL | RTLD_DEEPBIND, and that library (and the gRPC, protobuf, absl, OpenSSL... copies
 * it needs, shipped beside it under renamed sonames) resolves its symbols in its own tree first.
 * Only plain C types cross this interface, and every buffer is owned and freed by the caller,
 * so neither side ever frees memory the other allocated (their allocators may differ). */
#ifndef HDRLIFT_OFX_BRIDGE_H
#define HDRLIFT_OFX_BRIDGE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HDRLIFT_BRIDGE_ABI 1
#define HDRLIFT_BRIDGE_SYMBOL "hdrlift_bridge_v1"

enum { HDRLIFT_OK = 0, HDRLIFT_ERROR = 1, HDRLIFT_ABORTED = 2 };

typedef struct HdrliftConnection {
  const char *servers;     /* "host:port" or "host:port,host:port,..." */
  const char *token_file;  /* "" = $HDRLIFT_TOKEN, else none */
  const char *ca_file;     /* "" = plaintext */
  double timeout_s;        /* whole call, retries included */
  int retries;             /* on UNAVAILABLE / RESOURCE_EXHAUSTED */
} HdrliftConnection;

typedef struct HdrliftFrame {
  int width, height;
  const float *rgb;        /* planar R, G, B planes, each width*height, top row first */
  const char *model;       /* "" = the server's default */
  const char *input_space; /* "" = sRGB code values */
  const char *output_space;
  int return_mask;
  float *out;              /* caller's buffer: 4 planes (R, G, B, mask) of width*height */
  char *out_space;         /* caller's buffer for the resolved output space name */
  size_t out_space_size;
} HdrliftFrame;

/* Polled on the calling thread about every 20 ms while a call is in flight; non-zero cancels it. */
typedef int (*HdrliftAbortPoll)(void *user);

typedef struct HdrliftBridgeV1 {
  int abi;  /* HDRLIFT_BRIDGE_ABI */
  /* The runnable models, one per line as "name\tdefault\n" (default 1 or 0). */
  int (*list_models)(const HdrliftConnection *conn, char *out, size_t out_size, char *err, size_t err_size);
  /* One frame through Reconstruct (small) or ReconstructStream (large). */
  int (*reconstruct)(const HdrliftConnection *conn, HdrliftFrame *frame, HdrliftAbortPoll poll, void *poll_user,
                     char *err, size_t err_size);
  /* Drop the cached channels (the plug-in's unload). */
  void (*release)(void);
} HdrliftBridgeV1;

typedef const HdrliftBridgeV1 *(*HdrliftBridgeEntry)(void);

#ifdef __cplusplus
}
#endif
#endif
