#pragma once
// RecyclingAllocator<T>: a standard allocator for objects made and dropped at a high rate
// (a call's result state, with its shared_ptr control block). Each thread keeps up to
// kRecycledBlocksKept freed blocks of each size and hands them out again, at the cost of a few
// instructions.
//
// Why: with many calls in flight, a program makes and drops their states in bursts larger than
// malloc's per-thread cache (glibc's tcache keeps 7 blocks a size), and a ~400-byte block past
// that cache costs malloc's slow path both ways (bins, coalescing): several hundred
// instructions per call.
//
// A block freed on another thread than the one that made it joins the freeing thread's cache:
// blocks come from ::operator new and go back to ::operator delete, so any thread may keep
// them. A thread's cache is released when the thread ends; a block freed after that (by
// another thread_local's destructor) goes straight to ::operator delete. Under
// AddressSanitizer nothing is kept, so that it sees every block freed.
#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace troupe::detail {

// Blocks of `Size` bytes aligned to `Align`, straight from the global allocator.
template <std::size_t Size, std::size_t Align>
struct RawBlocks {
  static constexpr bool kOverAligned = Align > __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  static void* make() {
    if constexpr (kOverAligned) return ::operator new (Size, std::align_val_t{Align});
    return ::operator new(Size);
  }
  static void drop(void* block) noexcept {
    if constexpr (kOverAligned) {
      ::operator delete (block, std::align_val_t{Align});
    } else {
      ::operator delete(block);
    }
  }
};

/// Freed blocks a thread keeps, per block size (~400 KB of result states at most).
inline constexpr std::size_t kRecycledBlocksKept = 1024;

// AddressSanitizer must see every block freed, or a use after free goes unnoticed.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kRecycleBlocks = false;
#elif defined(__has_feature)
inline constexpr bool kRecycleBlocks = !__has_feature(address_sanitizer);
#else
inline constexpr bool kRecycleBlocks = true;
#endif

template <std::size_t Size, std::size_t Align>
class BlockCache {
 public:
  static void* take() {
    if (!kRecycleBlocks || state_ == kEnded) return Raw::make();
    BlockCache& cache = mine();
    if (cache.head_ == nullptr) return Raw::make();
    Free* block = cache.head_;
    cache.head_ = block->next;
    --cache.count_;
    return block;
  }

  static void give(void* block) noexcept {
    if (!kRecycleBlocks || state_ == kEnded) return Raw::drop(block);
    BlockCache& cache = mine();
    if (cache.count_ == kRecycledBlocksKept) return Raw::drop(block);
    cache.head_ = ::new (block) Free{cache.head_};
    ++cache.count_;
  }

 private:
  using Raw = RawBlocks<Size, Align>;
  struct Free {
    Free* next;
  };
  static_assert(Size >= sizeof(Free) && Align >= alignof(Free));
  enum State : unsigned char { kUnmade, kAlive, kEnded };

  BlockCache() noexcept { state_ = kAlive; }
  ~BlockCache() {
    state_ = kEnded;
    while (head_ != nullptr) Raw::drop(std::exchange(head_, head_->next));
  }
  static BlockCache& mine() noexcept {
    thread_local BlockCache cache;
    return cache;
  }

  Free* head_ = nullptr;
  std::size_t count_ = 0;
  // Trivially destructible: readable at any point of the thread's end.
  static thread_local inline State state_ = kUnmade;
};

template <class T>
struct RecyclingAllocator {
  using value_type = T;

  RecyclingAllocator() noexcept = default;
  template <class U>
  RecyclingAllocator(const RecyclingAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n != 1) return std::allocator<T>().allocate(n);
    return static_cast<T*>(Cache::take());
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n != 1) return std::allocator<T>().deallocate(p, n);
    Cache::give(p);
  }

  template <class U>
  bool operator==(const RecyclingAllocator<U>&) const noexcept {
    return true;
  }

 private:
  static constexpr std::size_t kAlign = alignof(T) < alignof(void*) ? alignof(void*) : alignof(T);
  using Cache = BlockCache<(sizeof(T) + kAlign - 1) / kAlign * kAlign, kAlign>;
};

}  // namespace troupe::detail
