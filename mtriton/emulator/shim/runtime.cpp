// metal-emu runtime: runs a kernel's grid on the CPU, one threadgroup at a
// time, each GPU thread a fiber on its own small stack.
//
// Fibers switch only where a GPU thread must wait for others (barriers,
// SIMD-group functions, spinning atomics), so a threadgroup of 256 threads
// costs a few hundred context switches per barrier, not an OS thread each.
// Device buffers and threadgroup arrays sit between guard regions, with their
// end (or, in a run of the other layout, their start) against one; the SIGSEGV
// handler turns a fault into an error report and jumps back to the launch.
//
// Kernels built for tracing (MTEMU_TRACE) check every load and store against
// shadow memory (8 bytes per shadow byte, AddressSanitizer's layout); the data
// of watched buffers is flagged there, so their accesses reach api_access,
// which records writes and finds pairs of accesses no barrier orders.
#if !(defined(__x86_64__) && defined(__linux__)) || defined(MTEMU_UCONTEXT)
// ucontext needs X/Open on macOS; keep the BSD names (MAP_ANON) visible too.
#define _XOPEN_SOURCE 700
#define _DARWIN_C_SOURCE 1
#include <ucontext.h>
#define MTEMU_ASM_SWITCH 0
#else
#define MTEMU_ASM_SWITCH 1
#endif

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "emu_abi.h"

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace {

constexpr uint32_t kMaxThreads = 1024;
constexpr uint32_t kMaxSites = 64;
// Scheduler passes in which every thread only spun on atomics, with no
// atomic write anywhere, before the threadgroup counts as deadlocked.
constexpr uint32_t kSpinPassLimit = 20000;
// Accesses a race trace records at most (80 bytes each) before it gives up.
constexpr uint32_t kTraceLimit = 1u << 20;

enum FiberState : uint8_t { RUNNABLE, AT_BARRIER, AT_SIMD, DONE };

#include "runtime_memory.h"

struct Fiber {
#if MTEMU_ASM_SWITCH
  void* sp;
#else
  ucontext_t uc;
#endif
  uint8_t state;
  uint8_t spun;  // last suspension was a spin-yield
  int32_t loc;
  uint32_t site;
  mtemu_combine_fn fn;
  void* in;
  void* out;
  char* stack;
  mtemu_attrs attrs;
};

struct Site {
  uint32_t site;
  char* data;
  uint64_t size;
  uint64_t poisoned_group;  // 1 + linear index of the group it was poisoned for
};

struct Launch {
  const mtemu_launch* desc;
  mtemu_error* err;
  mtemu_thread_state* ts;
  Fiber* cur;
  uint32_t n;
  uint32_t group[3];
  uint64_t group_linear;
  Site sites[kMaxSites];
  uint32_t nsites;
  uint64_t tg_total;
  // Race tracing: barriers released in this threadgroup, SIMD-group operations
  // completed per SIMD-group; accesses with the same counts are unordered.
  uint32_t epoch;
  uint32_t simd_ops[kMaxThreads / 32];
};

// A traced access, as the conflict check compares them.
struct TraceRecord {
  uint64_t group_linear;
  uint32_t thread;
  uint32_t epoch;
  uint32_t simd_ops;
  mtemu_access access;
};

Launch g;
Fiber* g_fibers;
uint32_t g_order[kMaxThreads];

#if MTEMU_ASM_SWITCH
void* g_sched_sp;
#else
ucontext_t g_sched_uc;
#endif

sigjmp_buf g_jmp;
volatile sig_atomic_t g_active;
pthread_t g_owner;
pthread_mutex_t g_launch_mutex = PTHREAD_MUTEX_INITIALIZER;

TraceRecord* g_trace;  // index 0 unused: a cell of 0 holds no access
uint32_t g_trace_size, g_trace_capacity;

char* g_pool;
size_t g_pool_slots, g_pool_slot;

const int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGVTALRM, SIGILL};
constexpr int kNumSignals = sizeof(kSignals) / sizeof(kSignals[0]);
struct sigaction g_old_actions[kNumSignals];
stack_t g_old_altstack;
char* g_altstack;
constexpr size_t kAltStackSize = 1 << 16;

// Fiber stacks are reused across launches; each has a guard page below it.
bool ensure_pool(size_t slots, size_t stack_size) {
  size_t page = page_size();
  size_t slot = round_up(stack_size, page) + page;
  if (g_pool && slots <= g_pool_slots && slot == g_pool_slot) return true;
  if (g_pool) munmap(g_pool, g_pool_slots * g_pool_slot);
  g_pool = nullptr;
  void* m = mmap(nullptr, slots * slot, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  g_pool = static_cast<char*>(m);
  g_pool_slots = slots;
  g_pool_slot = slot;
  for (size_t i = 0; i < slots; ++i) mprotect(g_pool + i * slot, page, PROT_NONE);
  return true;
}

// ---------------------------------------------------------------------------
// Context switch
// ---------------------------------------------------------------------------

#if MTEMU_ASM_SWITCH
extern "C" void mtemu_switch(void** save_sp, void* to_sp);
// Saves the callee-saved registers on the current stack, stores the stack
// pointer in *save_sp, and resumes the stack `to_sp` the same way.
asm(R"(
  .text
  .p2align 4
  .globl mtemu_switch
  .hidden mtemu_switch
  .type mtemu_switch,@function
mtemu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mtemu_switch, .-mtemu_switch
)");
#endif

void fiber_main();

// Prepares `f` to start in `main` (which must never return) on its stack.
void fiber_init(Fiber* f, void (*main)()) {
#if MTEMU_ASM_SWITCH
  void** sp = reinterpret_cast<void**>(f->stack + (g_pool_slot - page_size()));
  *--sp = nullptr;  // main's return address: it never returns
  *--sp = reinterpret_cast<void*>(main);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12-r15
  f->sp = sp;
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = g_pool_slot - page_size();
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, main, 0);
#endif
}

void resume(Fiber* f) {
  g.cur = f;
  g.ts->loc = f->loc;
  g.ts->lane = f->attrs.thread_index_in_simdgroup;
  g.ts->attrs = &f->attrs;
#if MTEMU_ASM_SWITCH
  mtemu_switch(&g_sched_sp, f->sp);
#else
  swapcontext(&g_sched_uc, &f->uc);
#endif
  f->loc = g.ts->loc;
  g.cur = nullptr;
}

void suspend(Fiber* f) {
#if MTEMU_ASM_SWITCH
  mtemu_switch(&f->sp, g_sched_sp);
#else
  swapcontext(&f->uc, &g_sched_uc);
#endif
}

void fiber_main() {
  Fiber* f = g.cur;
  g.desc->kernel->entry(g.desc->args, &f->attrs);
  f->state = DONE;
  suspend(f);
  abort();  // a finished fiber is never resumed
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

void copy3(uint32_t* dst, const uint32_t* src) {
  dst[0] = src[0];
  dst[1] = src[1];
  dst[2] = src[2];
}

void set_error(int kind, const Fiber* a, const Fiber* b) {
  mtemu_error* e = g.err;
  e->kind = kind;
  copy3(e->group, g.group);
  if (a) {
    e->has_pos = 1;
    copy3(e->pos, a->attrs.thread_position_in_threadgroup);
    e->loc = a == g.cur ? g.ts->loc : a->loc;
  }
  if (b) {
    e->has_pos2 = 1;
    copy3(e->pos2, b->attrs.thread_position_in_threadgroup);
    e->loc2 = b == g.cur ? g.ts->loc : b->loc;
  }
}

// Reports an error found while a fiber runs and hands control back to the
// scheduler, which stops the launch; the fiber is abandoned.
void fiber_error(int kind) {
  Fiber* f = g.cur;
  set_error(kind, f, nullptr);
  f->state = DONE;
  suspend(f);
  abort();
}

// ---------------------------------------------------------------------------
// Services for kernel code
// ---------------------------------------------------------------------------

// A kernel run in direct mode was judged (from its source) never to wait
// for other threads; if it does anyway, say so rather than misbehave.
void check_cooperative() {
  if (g.desc->direct) {
    strncpy(g.err->text, "synchronisation in a kernel run without fibers", sizeof(g.err->text) - 1);
    fiber_error(MTEMU_ERR_INTERNAL);
  }
}

void api_barrier(uint32_t site) {
  check_cooperative();
  Fiber* f = g.cur;
  f->state = AT_BARRIER;
  f->site = site;
  suspend(f);
}

void api_simd(uint32_t site, mtemu_combine_fn fn, void* in, void* out) {
  check_cooperative();
  Fiber* f = g.cur;
  f->state = AT_SIMD;
  f->site = site;
  f->fn = fn;
  f->in = in;
  f->out = out;
  suspend(f);
}

void api_spin() {
  check_cooperative();
  Fiber* f = g.cur;
  f->spun = 1;
  suspend(f);
}

void* api_tg_alloc(uint32_t site, uint64_t size, uint64_t align,
                   const char* name) {
  uint64_t mark = g.group_linear + 1;
  for (uint32_t i = 0; i < g.nsites; ++i) {
    Site& s = g.sites[i];
    if (s.site != site) continue;
    // Fresh poison per threadgroup: reading memory no thread of this group
    // wrote gives NaN-like garbage instead of another group's values.
    if (s.poisoned_group != mark) {
      memset(s.data, (int)g.desc->tg_poison, s.size);
      s.poisoned_group = mark;
    }
    return s.data;
  }
  g.tg_total += round_up(size, 16);
  if (g.tg_total > g.desc->tg_limit || g.nsites == kMaxSites) {
    strncpy(g.err->text, name, sizeof(g.err->text) - 1);
    g.err->size = g.tg_total;
    fiber_error(MTEMU_ERR_TG_LIMIT);
  }
  char* data = region_alloc(size, align, MTEMU_TAG_TG - (int32_t)site, g.desc->layout);
  if (!data) fiber_error(MTEMU_ERR_INTERNAL);
  memset(data, (int)g.desc->tg_poison, size);
  if ((g.desc->trace & MTEMU_TRACE_RACES) && g.desc->trace_group != UINT64_MAX) {
    // Threadgroup arrays are traced with the one threadgroup that is: every group reuses
    // them, so accesses of different groups to one of their bytes are no race.
    pthread_mutex_lock(&g_region_mutex);
    bool ok = false;
    for (int i = 0; i < g_nregions; ++i)
      if (g_regions[i].data == data) ok = region_watch(g_regions[i], nullptr, true);
    pthread_mutex_unlock(&g_region_mutex);
    if (!ok) fiber_error(MTEMU_ERR_INTERNAL);
  }
  g.sites[g.nsites++] = Site{site, data, size, mark};
  return data;
}

// ---------------------------------------------------------------------------
// Traced accesses
// ---------------------------------------------------------------------------

// Whether two accesses of different threads to the same byte race: one writes,
// they are not both atomic, and nothing orders them. Threads of one threadgroup
// are ordered by a barrier between the accesses, lanes of one SIMD-group also
// by a SIMD-group operation; threadgroups are never ordered.
bool races(const TraceRecord& a, const TraceRecord& b) {
  if (!a.access.write && !b.access.write) return false;
  if (a.access.atomic && b.access.atomic) return false;
  if (a.group_linear != b.group_linear) return true;
  if (a.thread == b.thread || a.epoch != b.epoch) return false;
  return a.thread / 32 != b.thread / 32 || a.simd_ops == b.simd_ops;
}

void report_race(const TraceRecord& first, const TraceRecord& second) {
  if (g.desc->race) {
    g.desc->race->first = first.access;
    g.desc->race->second = second.access;
  }
  fiber_error(MTEMU_ERR_RACE);
}

// Checks a traced access of the running thread against the last write and
// read of each byte it touches, then records it.
void trace_access(Region& r, int64_t offset, uint64_t size, bool write, Fiber* f) {
  if (g_trace_size >= kTraceLimit) return;  // gives up: the report says no pair was found
  if (g_trace_size + 1 >= g_trace_capacity) {
    uint32_t capacity = g_trace_capacity ? 2 * g_trace_capacity : 4096;
    void* grown = realloc(g_trace, (size_t)capacity * sizeof(TraceRecord));
    if (!grown) return;
    g_trace = static_cast<TraceRecord*>(grown);
    g_trace_capacity = capacity;
  }
  if (g_trace_size == 0) g_trace_size = 1;
  uint32_t index = g_trace_size++;
  TraceRecord& rec = g_trace[index];
  uint32_t thread = (uint32_t)(f - g_fibers);
  rec.group_linear = g.group_linear;
  rec.thread = thread;
  rec.epoch = g.epoch;
  rec.simd_ops = g.simd_ops[thread / 32];
  mtemu_access& a = rec.access;
  copy3(a.group, g.group);
  copy3(a.pos, f->attrs.thread_position_in_threadgroup);
  a.loc = g.ts->loc;
  a.tag = r.tag;
  a.offset = offset;
  a.size = (uint32_t)size;
  a.write = write;
  a.atomic = g.ts->atomic != 0;
  for (uint64_t i = 0; i < size; ++i) {
    uint32_t* cell = r.cells + 2 * (offset + (int64_t)i);
    if (cell[0] && races(g_trace[cell[0]], rec)) return report_race(g_trace[cell[0]], rec);
    if (write && cell[1] && races(g_trace[cell[1]], rec)) return report_race(g_trace[cell[1]], rec);
  }
  for (uint64_t i = 0; i < size; ++i) r.cells[2 * (offset + (int64_t)i) + (write ? 0 : 1)] = index;
}

// A traced build's load or store that the shadow flags: one of a watched
// buffer's bytes (or a neighbour's). Out of bounds is reported like a fault.
void api_access(const void* addr_ptr, uint64_t size, uint32_t flags) {
  Fiber* f = g.cur;
  if (!g_active || !f) return;  // a library constructor, or a SIMD-group's combine step
  const char* addr = static_cast<const char*>(addr_ptr);
  bool write = flags & MTEMU_ACCESS_WRITE;
  pthread_mutex_lock(&g_region_mutex);
  for (int i = 0; i < g_nregions; ++i) {
    Region& r = g_regions[i];
    if (addr + size <= r.map || addr >= r.map + r.map_size) continue;
    int64_t offset = addr - r.data;
    if (offset < 0 || (uint64_t)offset + size > r.size) {
      mtemu_error* e = g.err;
      e->addr = (uint64_t)(uintptr_t)addr;
      e->tag = r.tag;
      // An access that starts inside and runs past the end: its first byte out.
      e->offset = offset >= 0 && (uint64_t)offset < r.size ? (int64_t)r.size : offset;
      e->size = r.size;
      e->access = write;
      pthread_mutex_unlock(&g_region_mutex);
      fiber_error(MTEMU_ERR_FAULT);
    }
    if (write && r.written) memset(r.written + offset, 1, size);
    bool traced = (g.desc->trace & MTEMU_TRACE_RACES) && r.cells &&
                  (g.desc->trace_group == UINT64_MAX || g.desc->trace_group == g.group_linear);
    if (traced) {
      // report_race leaves through fiber_error: release the lock first
      Region copy = r;
      pthread_mutex_unlock(&g_region_mutex);
      trace_access(copy, offset, size, write, f);
      return;
    }
    break;
  }
  pthread_mutex_unlock(&g_region_mutex);
}

const mtemu_api g_api = {&api_barrier, &api_simd, &api_tg_alloc, &api_spin, &api_access};

// ---------------------------------------------------------------------------
// Scheduler
// ---------------------------------------------------------------------------

uint32_t xorshift(uint32_t* s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

void make_order(uint32_t n) {
  const mtemu_launch* d = g.desc;
  uint32_t order = (g.group_linear >= d->order_from && g.group_linear < d->order_to)
                       ? d->order
                       : 0;
  for (uint32_t i = 0; i < n; ++i) g_order[i] = order == 1 ? n - 1 - i : i;
  if (order == 2) {
    uint32_t s = d->seed ^ (uint32_t)(g.group_linear * 0x9E3779B9u) ^ 0xA5A5A5A5u;
    if (!s) s = 1;
    for (uint32_t i = n - 1; i > 0; --i) {
      uint32_t j = xorshift(&s) % (i + 1);
      uint32_t t = g_order[i];
      g_order[i] = g_order[j];
      g_order[j] = t;
    }
  }
}

// Runs the pending SIMD-group operation of the SIMD-group whose first thread
// is `lo` if its live lanes all wait. Lanes at the same call site form the
// active set, as lanes in one branch of divergent code do on the GPU.
// Returns -1 on error, else whether the operation ran.
int resolve_simd_group(uint32_t lo) {
  uint32_t hi = lo + 32 < g.n ? lo + 32 : g.n;
  Fiber* first = nullptr;
  for (uint32_t i = lo; i < hi; ++i) {
    Fiber* f = &g_fibers[i];
    if (f->state == RUNNABLE) return 0;
    if (f->state == AT_SIMD && !first) first = f;
  }
  if (!first) return 0;
  void* ins[32] = {};
  void* outs[32] = {};
  uint32_t mask = 0;
  for (uint32_t i = lo; i < hi; ++i) {
    Fiber* f = &g_fibers[i];
    if (f->state == AT_SIMD && f->site == first->site && f->fn == first->fn) {
      ins[i - lo] = f->in;
      outs[i - lo] = f->out;
      mask |= 1u << (i - lo);
    }
  }
  int rc = first->fn ? first->fn(ins, outs, mask, hi - lo) : MTEMU_OK;
  if (rc != MTEMU_OK) {
    set_error(rc, first, nullptr);
    return -1;
  }
  for (uint32_t i = lo; i < hi; ++i)
    if (mask & (1u << (i - lo))) g_fibers[i].state = RUNNABLE;
  ++g.simd_ops[lo / 32];
  return 1;
}

// Runs the pending operation of every SIMD-group whose live lanes all wait.
int resolve_simd() {
  int any = 0;
  for (uint32_t lo = 0; lo < g.n; lo += 32) {
    int rc = resolve_simd_group(lo);
    if (rc < 0) return -1;
    any |= rc;
  }
  return any;
}

// Every live thread waits at a barrier: release them, or report divergence.
bool resolve_barrier(uint32_t done) {
  Fiber* waiting = nullptr;
  Fiber* exited = nullptr;
  for (uint32_t i = 0; i < g.n; ++i) {
    Fiber* f = &g_fibers[i];
    if (f->state == AT_BARRIER && !waiting) waiting = f;
    if (f->state == DONE && !exited) exited = f;
  }
  if (!waiting) {
    set_error(MTEMU_ERR_INTERNAL, nullptr, nullptr);
    return false;
  }
  if (done) {
    set_error(MTEMU_ERR_BARRIER_EXITED, waiting, exited);
    return false;
  }
  for (uint32_t i = 0; i < g.n; ++i) {
    if (g_fibers[i].site != waiting->site) {
      set_error(MTEMU_ERR_BARRIER_MISMATCH, waiting, &g_fibers[i]);
      return false;
    }
  }
  for (uint32_t i = 0; i < g.n; ++i) g_fibers[i].state = RUNNABLE;
  ++g.epoch;
  return true;
}

Fiber g_worker;

// Direct mode: one fiber (on the first stack slot, so that overflows still
// hit a guard page) runs the group's threads to completion one by one.
void direct_main() {
  for (uint32_t k = 0; k < g.n; ++k) {
    Fiber* f = &g_fibers[g_order[k]];
    g.cur = f;
    g.ts->loc = -1;
    g.ts->lane = f->attrs.thread_index_in_simdgroup;
    g.ts->attrs = &f->attrs;
    g.desc->kernel->entry(g.desc->args, &f->attrs);
    f->state = DONE;
  }
  g.cur = &g_worker;
  g_worker.state = DONE;
  suspend(&g_worker);
  abort();
}

bool run_group_direct() {
  make_order(g.n);
  g_worker.stack = g_pool + page_size();
  g_worker.loc = -1;
  fiber_init(&g_worker, &direct_main);
  resume(&g_worker);
  return g.err->kind == MTEMU_OK;
}

bool run_group() {
  if (g.desc->direct) return run_group_direct();
  uint32_t n = g.n;
  make_order(n);
  uint32_t done = 0;
  uint32_t spin_passes = 0;
  for (;;) {
    bool ran = false;
    bool only_spins = true;
    uint32_t progress = g.ts->progress;
    for (uint32_t k = 0; k < n; ++k) {
      Fiber* f = &g_fibers[g_order[k]];
      if (f->state != RUNNABLE) continue;
      f->spun = 0;
      resume(f);
      if (g.err->kind) return false;
      ran = true;
      if (f->state == DONE) ++done;
      if (!f->spun) only_spins = false;
      if (f->state == AT_SIMD) {
        // A SIMD-group whose lanes have all arrived goes on at once, ahead of the threads
        // after it in the order, as a warp may run ahead of the others until a barrier:
        // a missing barrier then shows as a read of memory another warp has not written yet.
        int rc = resolve_simd_group((uint32_t)(f - g_fibers) / 32 * 32);
        if (rc < 0) return false;
        if (rc > 0) k = (uint32_t)-1;
      }
    }
    if (done == n) return true;
    if (ran && only_spins && g.ts->progress == progress) {
      if (++spin_passes > kSpinPassLimit) {
        Fiber* spinner = nullptr;
        for (uint32_t i = 0; i < n && !spinner; ++i)
          if (g_fibers[i].state == RUNNABLE) spinner = &g_fibers[i];
        set_error(MTEMU_ERR_SPIN_DEADLOCK, spinner, nullptr);
        return false;
      }
    } else {
      spin_passes = 0;
    }
    int simd = resolve_simd();
    if (simd < 0) return false;
    if (simd) continue;
    bool runnable = false;
    for (uint32_t i = 0; i < n && !runnable; ++i)
      runnable = g_fibers[i].state == RUNNABLE;
    if (runnable) continue;
    if (!resolve_barrier(done)) return false;
  }
}

uint32_t ceil_div(uint32_t a, uint32_t b) { return (uint32_t)(((uint64_t)a + b - 1) / b); }

// The position of the threadgroup of linear index `linear` (x fastest) in a
// grid of `groups` threadgroups; grids may hold more than 2^32 of them.
void group_position(uint64_t linear, const uint32_t* groups, uint32_t* pos) {
  pos[0] = (uint32_t)(linear % groups[0]);
  pos[1] = (uint32_t)(linear / groups[0] % groups[1]);
  pos[2] = (uint32_t)(linear / ((uint64_t)groups[0] * groups[1]));
}

// Sets up the fibers of the threadgroup at `pos`, whose threads fill the box
// `actual` (smaller than `tg` at the grid's far edges).
void init_group(const uint32_t* pos, const uint32_t* actual, const uint32_t* tg,
                const uint32_t* groups) {
  const mtemu_launch* d = g.desc;
  uint32_t n = actual[0] * actual[1] * actual[2];
  uint32_t dispatch_size = tg[0] * tg[1] * tg[2];
  g.n = n;
  copy3(g.group, pos);
  g.epoch = 0;
  memset(g.simd_ops, 0, sizeof(g.simd_ops));
  for (uint32_t t = 0; t < n; ++t) {
    Fiber* f = &g_fibers[t];
    f->state = RUNNABLE;
    f->loc = -1;
    f->site = 0;
    f->fn = nullptr;
    f->stack = g_pool + t * g_pool_slot + page_size();
    mtemu_attrs* a = &f->attrs;
    uint32_t local[3] = {t % actual[0], (t / actual[0]) % actual[1],
                         t / (actual[0] * actual[1])};
    for (int i = 0; i < 3; ++i) {
      a->thread_position_in_threadgroup[i] = local[i];
      a->threadgroup_position_in_grid[i] = pos[i];
      a->thread_position_in_grid[i] = (uint32_t)((uint64_t)pos[i] * tg[i] + local[i]);
      a->threads_per_threadgroup[i] = actual[i];
      a->dispatch_threads_per_threadgroup[i] = tg[i];
      a->threadgroups_per_grid[i] = groups[i];
      a->threads_per_grid[i] = d->grid[i];
      a->grid_origin[i] = 0;
      a->grid_size[i] = d->grid[i];
    }
    a->thread_index_in_threadgroup = t;
    a->thread_index_in_simdgroup = t % 32;
    a->simdgroup_index_in_threadgroup = t / 32;
    a->simdgroups_per_threadgroup = ceil_div(n, 32);
    a->dispatch_simdgroups_per_threadgroup = ceil_div(dispatch_size, 32);
    a->threads_per_simdgroup = 32;
    a->thread_execution_width = 32;
    a->thread_index_in_quadgroup = t % 4;
    a->quadgroup_index_in_threadgroup = t / 4;
    a->quadgroups_per_threadgroup = ceil_div(n, 4);
    a->dispatch_quadgroups_per_threadgroup = ceil_div(dispatch_size, 4);
    if (!d->direct) fiber_init(f, &fiber_main);
  }
}

void run_grid() {
  const mtemu_launch* d = g.desc;
  uint32_t tg[3], groups[3];
  for (int i = 0; i < 3; ++i) {
    // MLX clamps the threadgroup to the grid before dispatchThreads.
    tg[i] = d->group_size[i] < d->grid[i] ? d->group_size[i] : d->grid[i];
    groups[i] = tg[i] ? ceil_div(d->grid[i], tg[i]) : 0;
  }
  uint64_t total = (uint64_t)groups[0] * groups[1] * groups[2];
  for (uint64_t k = 0; k < total; ++k) {
    uint64_t linear = d->group_order ? total - 1 - k : k;
    uint32_t pos[3];
    group_position(linear, groups, pos);
    uint32_t actual[3];
    for (int i = 0; i < 3; ++i) {
      uint64_t left = (uint64_t)d->grid[i] - (uint64_t)pos[i] * tg[i];
      actual[i] = left < tg[i] ? (uint32_t)left : tg[i];
    }
    g.group_linear = linear;
    init_group(pos, actual, tg, groups);
    if (!run_group()) return;
  }
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

void classify_fault(mtemu_error* e, void* addr_ptr) {
  char* addr = static_cast<char*>(addr_ptr);
  e->addr = (uint64_t)(uintptr_t)addr;
  e->tag = -1;
  if (g_pool && addr >= g_pool && addr < g_pool + g_pool_slots * g_pool_slot &&
      (size_t)(addr - g_pool) % g_pool_slot < page_size()) {
    e->kind = MTEMU_ERR_STACK_OVERFLOW;
    return;
  }
  e->kind = MTEMU_ERR_FAULT;
  uint64_t best = kNearestBytes;
  for (int i = 0; i < g_nregions; ++i) {
    const Region& r = g_regions[i];
    if (addr >= r.map && addr < r.map + r.map_size) {
      e->tag = r.tag;
      e->offset = (int64_t)(addr - r.data);
      e->size = r.size;
      e->nearest = 0;
      return;
    }
    // In no mapping of ours: blame the buffer whose data is nearest.
    uint64_t distance = addr < r.data ? (uint64_t)(r.data - addr)
                        : addr >= r.data + r.size ? (uint64_t)(addr - (r.data + r.size)) + 1
                                                  : 0;
    if (distance < best) {
      best = distance;
      e->tag = r.tag;
      e->offset = (int64_t)(addr - r.data);
      e->size = r.size;
      e->nearest = 1;
    }
  }
}

void on_signal(int sig, siginfo_t* si, void* uctx) {
  if (!g_active || !pthread_equal(pthread_self(), g_owner)) {
    if (sig == SIGVTALRM) {
      // The CPU timer is process-wide; the launch thread handles it.
      if (g_active) pthread_kill(g_owner, SIGVTALRM);
      return;
    }
    // Not ours: put the previous handler back and let the fault recur.
    for (int i = 0; i < kNumSignals; ++i)
      if (kSignals[i] == sig) sigaction(sig, &g_old_actions[i], nullptr);
    return;
  }
  g_active = 0;
  mtemu_error* e = g.err;
  set_error(MTEMU_ERR_INTERNAL, g.cur, nullptr);
  if (sig == SIGVTALRM) {
    e->kind = MTEMU_ERR_TIMEOUT;
  } else if (sig == SIGFPE) {
    e->kind = MTEMU_ERR_ARITHMETIC;
  } else if (sig == SIGILL) {
    // __builtin_trap: kernels built with alignment checks trap on a misaligned access
    e->kind = MTEMU_ERR_MISALIGNED;
  } else {
    classify_fault(e, si->si_addr);
#if defined(__linux__) && defined(__x86_64__)
    // Bit 1 of the page-fault error code: the access was a write.
    const ucontext_t* uc = static_cast<const ucontext_t*>(uctx);
    e->access = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#else
    (void)uctx;
#endif
  }
  siglongjmp(g_jmp, 1);
}

void install_signals(double cpu_seconds) {
  g_owner = pthread_self();
  if (!g_altstack) g_altstack = static_cast<char*>(malloc(kAltStackSize));
  stack_t ss = {};
  ss.ss_sp = g_altstack;
  ss.ss_size = kAltStackSize;
  sigaltstack(&ss, &g_old_altstack);
  struct sigaction sa = {};
  sa.sa_sigaction = &on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < kNumSignals; ++i) sigaction(kSignals[i], &sa, &g_old_actions[i]);
  if (cpu_seconds > 0) {
    struct itimerval t = {};
    t.it_value.tv_sec = (time_t)cpu_seconds;
    t.it_value.tv_usec = (suseconds_t)((cpu_seconds - (double)t.it_value.tv_sec) * 1e6);
    setitimer(ITIMER_VIRTUAL, &t, nullptr);
  }
}

void remove_signals() {
  struct itimerval off = {};
  setitimer(ITIMER_VIRTUAL, &off, nullptr);
  for (int i = 0; i < kNumSignals; ++i) sigaction(kSignals[i], &g_old_actions[i], nullptr);
  sigaltstack(&g_old_altstack, nullptr);
}

}  // namespace

// ---------------------------------------------------------------------------
// Exported entry points (called from Python through ctypes)
// ---------------------------------------------------------------------------

extern "C" {

__attribute__((visibility("default"))) const mtemu_api* mtemu_api_table() {
  return &g_api;
}

__attribute__((visibility("default"))) uint32_t mtemu_abi_version() {
  return MTEMU_ABI_VERSION;
}

__attribute__((visibility("default"))) void* mtemu_alloc(uint64_t nbytes, uint64_t align,
                                                         int32_t tag, uint32_t layout) {
  return region_alloc(nbytes, align, tag, layout);
}

__attribute__((visibility("default"))) uint64_t mtemu_shadow_offset() { return kShadowOffset; }

// Reserves the shadow memory traced builds read; 0 or an errno. Call it before
// loading a traced build: its library constructors already read the shadow.
__attribute__((visibility("default"))) int mtemu_shadow_init() {
  pthread_mutex_lock(&g_region_mutex);
  int rc = shadow_init();
  pthread_mutex_unlock(&g_region_mutex);
  return rc;
}

// Watches a buffer from mtemu_alloc for the next traced runs: `written`
// (nbytes bytes, or null) gets a 1 for each byte a thread writes; with
// `races`, its accesses are checked for races. Returns 0, or -1 (no shadow).
__attribute__((visibility("default"))) int mtemu_watch(void* data, uint8_t* written, int races) {
  pthread_mutex_lock(&g_region_mutex);
  int rc = -1;
  for (int i = 0; i < g_nregions; ++i)
    if (g_regions[i].data == data) rc = region_watch(g_regions[i], written, races) ? 0 : -1;
  pthread_mutex_unlock(&g_region_mutex);
  return rc;
}

__attribute__((visibility("default"))) void mtemu_unwatch(void* data) {
  pthread_mutex_lock(&g_region_mutex);
  for (int i = 0; i < g_nregions; ++i)
    if (g_regions[i].data == data) region_unwatch(g_regions[i]);
  pthread_mutex_unlock(&g_region_mutex);
}

__attribute__((visibility("default"))) void mtemu_group_position(uint64_t linear,
                                                                 const uint32_t* groups,
                                                                 uint32_t* pos) {
  group_position(linear, groups, pos);
}

__attribute__((visibility("default"))) void mtemu_free(void* data) {
  region_free(data);
}

__attribute__((visibility("default"))) int mtemu_run(const mtemu_launch* d,
                                                     mtemu_error* err) {
  memset(err, 0, sizeof(*err));
  err->loc = err->loc2 = -1;
  err->tag = -1;
  err->access = -1;
  uint64_t threads = (uint64_t)d->group_size[0] * d->group_size[1] * d->group_size[2];
  if (d->kernel->abi != MTEMU_ABI_VERSION || threads == 0 || threads > kMaxThreads) {
    err->kind = MTEMU_ERR_INTERNAL;
    return err->kind;
  }
  pthread_mutex_lock(&g_launch_mutex);
  if (!g_fibers) g_fibers = static_cast<Fiber*>(calloc(kMaxThreads, sizeof(Fiber)));
  if (!g_fibers || !ensure_pool(kMaxThreads, d->stack_size)) {
    err->kind = MTEMU_ERR_INTERNAL;
    pthread_mutex_unlock(&g_launch_mutex);
    return err->kind;
  }
  g = Launch{};
  g.desc = d;
  g.err = err;
  g.ts = d->kernel->state;
  g.ts->atomic = 0;
  g_trace_size = 0;
  install_signals(d->cpu_seconds);
  if (sigsetjmp(g_jmp, 1) == 0) {
    g_active = 1;
    run_grid();
  }
  g_active = 0;
  remove_signals();
  for (uint32_t i = 0; i < g.nsites; ++i) region_free(g.sites[i].data);
  g.nsites = 0;
  if (g_trace_capacity > (1u << 16)) {  // a long trace's memory goes back
    free(g_trace);
    g_trace = nullptr;
    g_trace_capacity = 0;
  }
  g_trace_size = 0;
  pthread_mutex_unlock(&g_launch_mutex);
  return err->kind;
}

}  // extern "C"
