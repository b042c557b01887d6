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
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe::detail {

template <class Value>
class CallMap {
 public:
  CallMap() : slots_(kMinCapacity) {}

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Adds `value` under `key` (non-zero, not present).
  void insert(std::uint64_t key, Value value) {
    if (2 * (size_ + 1) > slots_.size()) rehash(2 * slots_.size());
    place(key, std::move(value));
    ++size_;
  }

  /// Removes `key` and returns its value, or nothing if it is not there.
  std::optional<Value> take(std::uint64_t key) {
    std::optional<Value> value;
    if (Slot& slot = slots_[key & (slots_.size() - 1)]; slot.key == key) {
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
    if (--size_ == 0 && slots_.size() > kKeptCapacity) std::vector<Slot>(kMinCapacity).swap(slots_);
    return value;
  }

  /// Removes every entry for which `pred(value)` holds and returns their values.
  template <class Pred>
  std::vector<Value> take_if(Pred pred) {
    std::vector<Value> taken;
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
    return taken;
  }

  /// Removes and returns every value.
  std::vector<Value> take_all() {
    std::vector<Value> taken = take_if([](const Value&) { return true; });
    std::vector<Slot>(kMinCapacity).swap(slots_);
    return taken;
  }

 private:
  static constexpr std::size_t kMinCapacity = 64;      // a power of two, as every capacity is
  static constexpr std::size_t kKeptCapacity = 16384;  // slots kept when the map empties

  struct Slot {
    std::uint64_t key = 0;
    Value value{};
  };

  void place(std::uint64_t key, Value&& value) {
    Slot& slot = slots_[key & (slots_.size() - 1)];
    if (slot.key == 0) {
      slot.key = key;
      slot.value = std::move(value);
    } else {
      overflow_.emplace(key, std::move(value));
    }
  }

  void rehash(std::size_t capacity) {
    std::vector<Slot> old(capacity);
    old.swap(slots_);
    std::unordered_map<std::uint64_t, Value> overflow;
    overflow.swap(overflow_);
    for (Slot& slot : old) {
      if (slot.key != 0) place(slot.key, std::move(slot.value));
    }
    for (auto& [key, value] : overflow) place(key, std::move(value));
  }

  std::vector<Slot> slots_;
  std::unordered_map<std::uint64_t, Value> overflow_;  // calls whose slot an older one holds
  std::size_t size_ = 0;
};

}  // namespace troupe::detail
