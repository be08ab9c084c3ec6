// metal-emu: the interface between the runtime library and a compiled kernel.
//
// Plain C so that both sides (runtime.cpp, built once, and each kernel's
// translation unit) agree on the layout. Bump MTEMU_ABI_VERSION on any change:
// it is part of every cache key.
#pragma once
#include <stdint.h>

#define MTEMU_ABI_VERSION 3

#ifdef __cplusplus
extern "C" {
#endif

// Error kinds reported by the runtime; the Python side maps them to exceptions.
enum {
  MTEMU_OK = 0,
  MTEMU_ERR_BARRIER_EXITED = 1,    // some threads wait at a barrier, others returned
  MTEMU_ERR_BARRIER_MISMATCH = 2,  // threads wait at different barriers
  MTEMU_ERR_SPIN_DEADLOCK = 3,     // threads spin on atomics that nothing changes
  MTEMU_ERR_TIMEOUT = 4,           // kernel ran past its CPU-time budget
  MTEMU_ERR_FAULT = 5,             // memory fault (device buffer or wild pointer)
  MTEMU_ERR_TG_LIMIT = 6,          // threadgroup memory over the limit
  MTEMU_ERR_STACK_OVERFLOW = 7,    // a thread overflowed its fiber stack
  MTEMU_ERR_ARITHMETIC = 8,        // SIGFPE: integer division by zero
  MTEMU_ERR_MATRIX_LANES = 9,      // simdgroup_matrix op without all 32 lanes
  MTEMU_ERR_INTERNAL = 10,         // runtime misuse (bad arguments, out of memory)
  MTEMU_ERR_MISALIGNED = 11,       // a trap: an access not aligned to its size (cuda-emu)
  MTEMU_ERR_RACE = 12,             // traced run: two unordered accesses, one a write (mtemu_race)
};

// Where a buffer's data sits in its mapping: against the guard after it (an access past the
// end faults) or against the guard before it (an access before the start faults).
enum { MTEMU_LAYOUT_END = 0, MTEMU_LAYOUT_START = 1 };

// What a run of a traced build (compiled with MTEMU_TRACE, every load and store checked
// against shadow memory) records: writes into watched buffers' write maps, and conflicting
// accesses to watched memory.
enum { MTEMU_TRACE_WRITES = 1, MTEMU_TRACE_RACES = 2 };
// mtemu_api.access flags.
enum { MTEMU_ACCESS_WRITE = 1 };

// Region tags: device buffers use their index (>= 0); threadgroup arrays use
// MTEMU_TAG_TG - site.
#define MTEMU_TAG_TG (-1000)

// A SIMD-group operation's combine step. `ins[lane]` and `outs[lane]` point
// into the stacks of the lanes taking part (null for the others); bit `lane`
// of `mask` is set for those lanes. `width` is the number of lanes the
// SIMD-group has (< 32 for a partial last SIMD-group). Returns an MTEMU_ERR_*.
typedef int (*mtemu_combine_fn)(void* const* ins, void* const* outs,
                                 uint32_t mask, uint32_t width);

// Per-thread attribute values, named after the Metal attributes they feed.
typedef struct mtemu_attrs {
  uint32_t thread_position_in_grid[3];
  uint32_t thread_position_in_threadgroup[3];
  uint32_t threadgroup_position_in_grid[3];
  uint32_t threads_per_threadgroup[3];
  uint32_t dispatch_threads_per_threadgroup[3];
  uint32_t threadgroups_per_grid[3];
  uint32_t threads_per_grid[3];
  uint32_t grid_origin[3];
  uint32_t grid_size[3];
  uint32_t thread_index_in_threadgroup;
  uint32_t thread_index_in_simdgroup;
  uint32_t simdgroup_index_in_threadgroup;
  uint32_t simdgroups_per_threadgroup;
  uint32_t dispatch_simdgroups_per_threadgroup;
  uint32_t threads_per_simdgroup;
  uint32_t thread_execution_width;
  uint32_t thread_index_in_quadgroup;
  uint32_t quadgroup_index_in_threadgroup;
  uint32_t quadgroups_per_threadgroup;
  uint32_t dispatch_quadgroups_per_threadgroup;
} mtemu_attrs;

// Services the runtime offers to kernel code (the shim calls these).
typedef struct mtemu_api {
  void (*barrier)(uint32_t site);
  void (*simd)(uint32_t site, mtemu_combine_fn fn, void* in, void* out);
  void* (*tg_alloc)(uint32_t site, uint64_t size, uint64_t align,
                    const char* name);
  void (*spin)(void);
  // Traced builds: a load or store of `size` bytes at `addr` that the shadow memory flags.
  void (*access)(const void* addr, uint64_t size, uint32_t flags);
} mtemu_api;

// State the kernel library keeps for the thread that runs now; the runtime
// saves and restores `loc` and sets `lane` around every fiber switch, so that
// plain stores in kernel code suffice.
typedef struct mtemu_thread_state {
  int32_t loc;        // last recorded source location id (-1: none yet)
  uint32_t lane;      // thread_index_in_simdgroup of the running thread
  uint32_t progress;  // bumped by every atomic write
  uint32_t spins;     // atomic loads since the last yield
  uint32_t atomic;    // traced builds: the thread is inside an atomic operation
  const struct mtemu_attrs* attrs;  // the running thread's attributes (CUDA's threadIdx, ...)
} mtemu_thread_state;

typedef struct mtemu_kernel {
  uint32_t abi;
  void (*entry)(void* const* args, const mtemu_attrs* attrs);
  mtemu_thread_state* state;
} mtemu_kernel;

// One access of a traced run: the thread, the statement, the byte range.
typedef struct mtemu_access {
  uint32_t group[3];  // threadgroup_position_in_grid
  uint32_t pos[3];    // thread_position_in_threadgroup
  int32_t loc;        // location id of the statement
  int32_t tag;        // region tag of the memory
  int64_t offset;     // byte offset from the region's data
  uint32_t size;      // bytes
  uint32_t write;     // 1 write, 0 read
  uint32_t atomic;    // inside an atomic operation
} mtemu_access;

// The first pair of conflicting accesses a traced run found (MTEMU_ERR_RACE).
typedef struct mtemu_race {
  mtemu_access first, second;  // in the order they ran
} mtemu_race;

typedef struct mtemu_launch {
  const mtemu_kernel* kernel;
  void* const* args;
  uint32_t grid[3];
  uint32_t group_size[3];  // threadgroup size as the caller asked
  uint32_t order;          // threads of a group: 0 forward, 1 reverse, 2 shuffled
  uint32_t group_order;    // 0: threadgroups in index order, 1: reversed
  uint64_t order_from;     // threadgroups [order_from, order_to) (linear index) use
  uint64_t order_to;       // `order`, the others run forward (used to bisect races)
  uint32_t direct;         // no thread ever waits for another: run them
                           // one after another on one stack, no switches
  uint32_t seed;
  uint64_t tg_limit;       // threadgroup memory limit in bytes
  uint64_t stack_size;     // bytes of stack per thread
  double cpu_seconds;      // CPU-time budget (0: none)
  uint32_t tg_poison;      // byte written over threadgroup memory per group
  uint32_t layout;         // MTEMU_LAYOUT_* of the threadgroup arrays
  uint32_t trace;          // MTEMU_TRACE_* (traced builds only)
  uint64_t trace_group;    // race tracing: the one threadgroup traced, or UINT64_MAX for all
  mtemu_race* race;        // filled on MTEMU_ERR_RACE
} mtemu_launch;

typedef struct mtemu_error {
  int32_t kind;
  int32_t loc, loc2;              // location ids of the two threads involved
  uint32_t group[3];              // threadgroup_position_in_grid
  uint32_t pos[3], pos2[3];       // thread_position_in_threadgroup
  int32_t has_pos, has_pos2;
  int32_t tag;                    // faulting region's tag
  int32_t nearest;                // 1: the address is in no region; `tag` is the nearest one
  int32_t access;                 // 1 write, 0 read, -1 unknown
  int64_t offset;                 // fault byte offset from the region's start
  uint64_t addr, size;            // fault address; region size
  char text[160];                 // extra detail (a threadgroup array's name)
} mtemu_error;

#ifdef __cplusplus
}
#endif
