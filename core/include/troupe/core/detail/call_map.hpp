#pragma once
// CallMap<Value>: the calls a link has sent and not seen answered, keyed by call id. A
// std::unordered_map cost a node allocation and a free per call, and with many calls in flight
// those went past malloc's per-thread cache to its slow path.
//
// Call ids are handed out in sequence, so the calls in flight fit an array indexed by the id's
// low bits: a call's slot is id mod capacity, found at once, with no probing (linear probing
// made the calls in flight one long cluster, which every removal walked). A call whose slot is
// held by an older call still in flight (ids a multiple of the capacity apart: the old call
// waits long) goes to a small overflow map. The array doubles when half full.
// Key 0 marks an empty slot: call ids start at 1. Not thread-safe: the owner's mutex guards it.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe::detail {

template <class Value>
class CallMap {
  // Entries move between the array and the overflow map without a chance to fail halfway.
  static_assert(std::is_nothrow_move_constructible_v<Value> &&
                std::is_nothrow_move_assignable_v<Value> &&
                std::is_nothrow_default_constructible_v<Value>);

 public:
  CallMap() : slots_(kMinCapacity) {}

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Adds `value` under `key` (non-zero, not present). On failure (out of memory) the map is
  /// as it was.
  void insert(std::uint64_t key, Value value) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    Slot& slot = slot_of(key);
    if (slot.key == 0) {
      slot.key = key;
      slot.value = std::move(value);
    } else {
      overflow_.emplace(key, std::move(value));
    }
    ++size_;
  }

  /// True if `key` is there.
  bool contains(std::uint64_t key) const noexcept {
    if (key == 0) return false;
    return slots_[key & (slots_.size() - 1)].key == key || overflow_.count(key) != 0;
  }

  /// Removes `key` and returns its value, or nothing if it is not there (0 never is: it is
  /// what a peer's frame may carry, and marks empty slots here).
  std::optional<Value> take(std::uint64_t key) noexcept {
    if (key == 0) return std::nullopt;
    std::optional<Value> value;
    if (Slot& slot = slot_of(key); slot.key == key) {
      value.emplace(std::exchange(slot.value, Value{}));
      slot.key = 0;
    } else if (auto it = overflow_.find(key); it != overflow_.end()) {
      value.emplace(std::move(it->second));
      overflow_.erase(it);
    } else {
      return std::nullopt;
    }
    // Keeps its array while calls remain: a program that sends bursts refills it at once. A
    // large array goes once the burst is over.
    if (--size_ == 0 && slots_.size() > kKeptCapacity) release_array();
    return value;
  }

  /// Removes every entry for which `pred(value)` holds and returns their values. On failure
  /// (out of memory) the map is as it was.
  template <class Pred>
  std::vector<Value> take_if(Pred pred) {
    std::vector<Value> taken;
    taken.reserve(size_);  // the only allocation: nothing below throws
    for (Slot& slot : slots_) {
      if (slot.key != 0 && pred(std::as_const(slot.value))) {
        taken.push_back(std::exchange(slot.value, Value{}));
        slot.key = 0;
      }
    }
    for (auto it = overflow_.begin(); it != overflow_.end();) {
      if (pred(std::as_const(it->second))) {
        taken.push_back(std::move(it->second));
        it = overflow_.erase(it);
      } else {
        ++it;
      }
    }
    size_ -= taken.size();
    if (size_ == 0 && slots_.size() > kKeptCapacity) release_array();
    return taken;
  }

  /// Removes and returns every value.
  std::vector<Value> take_all() {
    return take_if([](const Value&) { return true; });
  }

 private:
  static constexpr std::size_t kMinCapacity = 64;      // a power of two, as every capacity is
  static constexpr std::size_t kKeptCapacity = 16384;  // slots kept when the map empties

  struct Slot {
    std::uint64_t key = 0;
    Value value{};
  };

  Slot& slot_of(std::uint64_t key) noexcept { return slots_[key & (slots_.size() - 1)]; }

  // Doubles the array. Its allocation is the only one: keys in different slots stay in
  // different slots at twice the capacity, and an overflow entry moves into its slot if that
  // is free now, or stays.
  void grow() {
    std::vector<Slot> old(2 * slots_.size());
    old.swap(slots_);
    for (Slot& slot : old) {
      if (slot.key != 0) slot_of(slot.key) = std::move(slot);
    }
    for (auto it = overflow_.begin(); it != overflow_.end();) {
      if (Slot& slot = slot_of(it->first); slot.key == 0) {
        slot.key = it->first;
        slot.value = std::move(it->second);
        it = overflow_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Best effort: an empty map goes back to the smallest array (if even that cannot be had, the
  // large one, empty, stays).
  void release_array() noexcept {
    try {
      std::vector<Slot>(kMinCapacity).swap(slots_);
    } catch (...) {
    }
  }

  std::vector<Slot> slots_;
  std::unordered_map<std::uint64_t, Value> overflow_;  // calls whose slot an older one holds
  std::size_t size_ = 0;
};

}  // namespace troupe::detail
