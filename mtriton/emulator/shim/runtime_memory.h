// metal-emu runtime, guarded memory: device buffers and threadgroup arrays between guard
// regions, in either layout, and the shadow memory of traced builds with the watches over it.
// Included once, by runtime.cpp, inside its anonymous namespace.
#pragma once

constexpr uint32_t kMaxRegions = 4096;
// Inaccessible bytes on each side of a buffer: an access that far off still
// faults inside the buffer's own mapping and is blamed on it. Address space
// only: nothing is committed.
constexpr size_t kGuardBytes = 1 << 20;
// Faults this far from every buffer still name the nearest one.
constexpr uint64_t kNearestBytes = 1ull << 32;
// Shadow memory of traced builds: shadow(addr) = (addr >> 3) + kShadowOffset,
// covering the user address space. The kernel's compiler flags carry the same
// offset (mtemu_shadow_offset).
#if defined(__x86_64__)
constexpr uintptr_t kShadowOffset = 0x7fff8000;  // AddressSanitizer's on x86-64
constexpr uint64_t kAddressBits = 47;
#else
constexpr uintptr_t kShadowOffset = (uintptr_t)1 << 36;  // AddressSanitizer's on AArch64
constexpr uint64_t kAddressBits = 48;
#endif
// Shadow value of watched bytes: negative, so that every access takes the slow path.
constexpr int8_t kShadowWatched = (int8_t)0xF8;

struct Region {
  char* map;
  size_t map_size;
  char* data;
  size_t size;
  int32_t tag;
  bool watched;       // its data is flagged in the shadow memory
  uint8_t* written;   // watched: set to 1 per byte written (the caller's map), or null
  uint32_t* cells;    // race tracing: per data byte, the trace index of its last write and read
};

pthread_mutex_t g_region_mutex = PTHREAD_MUTEX_INITIALIZER;
Region g_regions[kMaxRegions];
volatile int g_nregions;

bool g_shadow_ready;
size_t g_page;

size_t page_size() {
  if (!g_page) g_page = (size_t)sysconf(_SC_PAGESIZE);
  return g_page;
}

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

// ---------------------------------------------------------------------------
// Guarded memory regions
// ---------------------------------------------------------------------------

// Maps `nbytes` between two guard regions. MTEMU_LAYOUT_END puts the data's
// end against the guard after it, so that the first byte past the buffer
// faults; MTEMU_LAYOUT_START puts its start against the guard before it, so
// that the last byte before the buffer faults. A page can hold a guard or
// data, not both: one side always has slack, which the other layout closes.
char* region_alloc(uint64_t nbytes, uint64_t align, int32_t tag, uint32_t layout) {
  size_t page = page_size();
  size_t guard = round_up(kGuardBytes, page);
  if (align == 0) align = 1;
  size_t body = round_up(nbytes + align, page);
  size_t map_size = body + 2 * guard;
  void* m = mmap(nullptr, map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  char* map = static_cast<char*>(m);
  if (mprotect(map + guard, body, PROT_READ | PROT_WRITE) != 0) {
    munmap(map, map_size);
    return nullptr;
  }
  char* end = map + guard + body;
  uintptr_t start = layout == MTEMU_LAYOUT_START
                        ? (uintptr_t)(map + guard)
                        : ((uintptr_t)end - nbytes) & ~(uintptr_t)(align - 1);
  pthread_mutex_lock(&g_region_mutex);
  if (g_nregions >= (int)kMaxRegions) {
    pthread_mutex_unlock(&g_region_mutex);
    munmap(map, map_size);
    return nullptr;
  }
  g_regions[g_nregions] = Region{map, map_size, (char*)start, nbytes, tag, false, nullptr, nullptr};
  g_nregions = g_nregions + 1;
  pthread_mutex_unlock(&g_region_mutex);
  return (char*)start;
}

// ---------------------------------------------------------------------------
// Shadow memory (traced builds)
// ---------------------------------------------------------------------------

// Reserves the shadow of the whole address space (nothing is committed until
// written). Returns 0 or an errno.
int shadow_init() {
  if (g_shadow_ready) return 0;
  uint64_t span = (1ull << kAddressBits) >> 3;
  void* m = mmap((void*)kShadowOffset, span, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (m == MAP_FAILED) return errno ? errno : ENOMEM;
  if (m != (void*)kShadowOffset) {  // a kernel without MAP_FIXED_NOREPLACE took it as a hint
    munmap(m, span);
    return EEXIST;
  }
  g_shadow_ready = true;
  return 0;
}

// Flags (or clears) the shadow of [data, data + size): every 8-byte granule
// that holds one of its bytes. Granules are within the region's own pages.
void shadow_mark(const char* data, size_t size, bool watched) {
  if (!g_shadow_ready || size == 0) return;
  uintptr_t lo = (uintptr_t)data >> 3, hi = ((uintptr_t)data + size + 7) >> 3;
  memset((void*)(lo + kShadowOffset), watched ? (uint8_t)kShadowWatched : 0, hi - lo);
}

// Starts watching region `r` (the region mutex is held).
bool region_watch(Region& r, uint8_t* written, bool cells) {
  if (!g_shadow_ready) return false;
  if (cells && !r.cells && r.size) {
    r.cells = static_cast<uint32_t*>(calloc(2 * r.size, sizeof(uint32_t)));
    if (!r.cells) return false;
  }
  r.written = written;
  r.watched = true;
  shadow_mark(r.data, r.size, true);
  return true;
}

void region_unwatch(Region& r) {
  if (r.watched) shadow_mark(r.data, r.size, false);
  r.watched = false;
  r.written = nullptr;
  free(r.cells);
  r.cells = nullptr;
}

void region_free(void* data) {
  pthread_mutex_lock(&g_region_mutex);
  for (int i = 0; i < g_nregions; ++i) {
    if (g_regions[i].data == data) {
      Region r = g_regions[i];
      region_unwatch(r);
      g_regions[i] = g_regions[g_nregions - 1];
      g_nregions = g_nregions - 1;
      pthread_mutex_unlock(&g_region_mutex);
      munmap(r.map, r.map_size);
      return;
    }
  }
  pthread_mutex_unlock(&g_region_mutex);
}
