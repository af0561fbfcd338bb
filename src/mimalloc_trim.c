// Give back the unused tail of partly used mimalloc pages (README "Memory", "What a burst
// leaves").
//
// mimalloc never returns part of a page that still holds a live block. A page a worker thread
// filled at start with a few long-lived blocks (thread-locals, runtime state) is extended to its
// full 64 KiB by the next burst of requests, and stays that big, resident, for the rest of the
// process's life once the burst is over: a handful of live blocks pinning a whole page. This
// file adds one function, run on a thread after `mi_collect(true)` once the data plane is quiet:
// for each page the calling thread owns, it finds the highest block still in use, shortens the
// page's extended capacity to just past it, rebuilds the free list from the free blocks below
// (lowest address first, so later allocations keep to the front of the page) and hands the OS
// pages above back with `madvise(MADV_DONTNEED)`. mimalloc extends the page again from there
// when it needs the room, as it does for a fresh page; the memory reads back as zeroes.
//
// It uses mimalloc's internal page layout, so it is tied to the mimalloc version the pinned
// `libmimalloc-sys` builds (`=0.1.49`, mimalloc 3.3.2): build.rs compiles it against that
// crate's own headers with its release defines. Only the owning thread touches a page's `free`
// list and `capacity`; other threads only push onto `xthread_free`, which this leaves alone, and
// blocks above the cut are all free, so no other thread can hold one.

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "mimalloc.h"
#include "mimalloc/internal.h"

// The most blocks a page can have for the free-block bitmap below: a 64 KiB small page of 8-byte
// blocks. Pages with more are left alone.
#define TRIM_MAX_BLOCKS 8192

static size_t trim_page(mi_page_t* page, uint64_t* freemap) {
  if (page->slice_committed != 0) return 0;  // committed on demand: leave it to mimalloc
  if (page->reserved <= 1 || page->capacity > TRIM_MAX_BLOCKS) return 0;
  _mi_page_free_collect(page, true);  // local and other threads' frees into `free`
  if (page->used == 0 || page->local_free != NULL) return 0;  // empty pages: mi_collect frees them
  const size_t bsize = mi_page_block_size(page);
  const size_t cap = page->capacity;
  uint8_t* const start = mi_page_start(page);
  const size_t os_page = _mi_os_page_size();
  // Nothing to give back unless at least one whole OS page above the last live block.
  if (cap * bsize < os_page) return 0;

  // Mark the free blocks; every block not on `free` is in use (or in `xthread_free`, counted in
  // `used`), so the counts must add up or the page is left alone.
  const size_t words = (cap + 63) / 64;
  memset(freemap, 0, words * sizeof(uint64_t));
  size_t nfree = 0;
  for (mi_block_t* b = page->free; b != NULL; b = mi_block_next(page, b)) {
    const size_t off = (size_t)((uint8_t*)b - start);
    const size_t i = off / bsize;
    if ((uint8_t*)b < start || i >= cap || off % bsize != 0) return 0;
    if (freemap[i / 64] & (1ULL << (i % 64))) return 0;
    freemap[i / 64] |= 1ULL << (i % 64);
    nfree++;
  }
  if (nfree + page->used != cap) return 0;

  // The highest block in use.
  size_t top = cap;
  while (top > 0) {
    const size_t i = top - 1;
    if (!(freemap[i / 64] & (1ULL << (i % 64)))) break;
    top--;
  }
  if (top == 0) return 0;  // all free after all: mi_collect's job

  const uintptr_t lo = _mi_align_up((uintptr_t)(start + top * bsize), os_page);
  const uintptr_t hi = _mi_align_down((uintptr_t)(start + cap * bsize), os_page);
  if (hi <= lo) return 0;
  // Keep every block that lies wholly below `lo`; the ones reaching into the returned range go.
  const size_t keep = (size_t)(lo - (uintptr_t)start) / bsize;

  // Free list again, lowest address first, from the free blocks below `keep`.
  mi_block_t* head = NULL;
  mi_block_t* tail = NULL;
  for (size_t i = 0; i < keep; i++) {
    if (!(freemap[i / 64] & (1ULL << (i % 64)))) continue;
    mi_block_t* b = (mi_block_t*)(start + i * bsize);
    if (tail == NULL) head = b; else mi_block_set_next(page, tail, b);
    tail = b;
  }
  if (tail != NULL) mi_block_set_next(page, tail, NULL);
  page->free = head;
  page->capacity = (uint16_t)keep;
  page->free_is_zero = false;

  if (madvise((void*)lo, hi - lo, MADV_DONTNEED) != 0) return 0;  // still valid, just resident
  return hi - lo;
}

// Trim every page of the calling thread's default heap; returns the bytes given back.
size_t llmgw_mi_trim_thread(void) {
  mi_theap_t* theap = mi_theap_get_default();
  if (theap == NULL || !mi_theap_is_initialized(theap)) return 0;
  uint64_t freemap[TRIM_MAX_BLOCKS / 64];  // 1 KiB on the stack
  size_t trimmed = 0;
  // Not the full queue (MI_BIN_FULL): its pages had no free block when last looked at, and a
  // free on one moves it back to its size class first.
  for (size_t bin = 0; bin < MI_BIN_FULL; bin++) {
    for (mi_page_t* page = theap->pages[bin].first; page != NULL; page = page->next) {
      trimmed += trim_page(page, freemap);
    }
  }
  return trimmed;
}
