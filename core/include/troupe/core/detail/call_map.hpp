#pragma once
// CallMap<Value>: the calls a link has sent and not seen answered, keyed by call id, in one
// flat array. A std::unordered_map cost a node allocation and a free per call, and with many
// calls in flight those went past malloc's per-thread cache to its slow path.
//
// Open addressing with linear probing; a key's home slot is its low bits. Call ids are handed
// out in sequence, so the ids in flight fill consecutive slots and probes stay short. A removal
// shifts the entries after it back (no tombstones), so a lookup stops at the first empty slot.
// Key 0 marks an empty slot: call ids start at 1. Not thread-safe: the owner's mutex guards it.
#include <cstddef>
#include <cstdint>
#include <optional>
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
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = key & mask;; i = (i + 1) & mask) {
      if (slots_[i].key == 0) return std::nullopt;
      if (slots_[i].key == key) {
        std::optional<Value> value(std::move(slots_[i].value));
        erase_at(i);
        --size_;
        if (slots_.size() > kMinCapacity && 8 * size_ < slots_.size()) rehash(slots_.size() / 2);
        return value;
      }
    }
  }

  /// Removes every entry for which `pred(value)` holds and returns their values.
  template <class Pred>
  std::vector<Value> take_if(Pred pred) {
    std::vector<std::uint64_t> keys;
    for (const Slot& slot : slots_) {
      if (slot.key != 0 && pred(slot.value)) keys.push_back(slot.key);
    }
    std::vector<Value> taken;
    taken.reserve(keys.size());
    for (std::uint64_t key : keys) taken.push_back(std::move(*take(key)));
    return taken;
  }

  /// Removes and returns every value.
  std::vector<Value> take_all() {
    std::vector<Value> taken;
    taken.reserve(size_);
    for (Slot& slot : slots_) {
      if (slot.key != 0) taken.push_back(std::move(slot.value));
    }
    std::vector<Slot>(kMinCapacity).swap(slots_);
    size_ = 0;
    return taken;
  }

 private:
  static constexpr std::size_t kMinCapacity = 64;  // a power of two, as every capacity is

  struct Slot {
    std::uint64_t key = 0;
    Value value{};
  };

  void place(std::uint64_t key, Value&& value) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = key & mask;
    while (slots_[i].key != 0) i = (i + 1) & mask;
    slots_[i].key = key;
    slots_[i].value = std::move(value);
  }

  // Empties slot `hole`, then moves back each later entry of the run whose home slot is not
  // between the hole and its own slot (cyclically): a lookup for it would stop at the hole.
  void erase_at(std::size_t hole) {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = (hole + 1) & mask; slots_[i].key != 0; i = (i + 1) & mask) {
      const std::size_t home = slots_[i].key & mask;
      const bool reachable_past_hole = hole <= i ? (hole < home && home <= i)   // no wrap
                                                 : (hole < home || home <= i);  // wrapped
      if (reachable_past_hole) continue;
      slots_[hole] = std::move(slots_[i]);
      hole = i;
    }
    slots_[hole].key = 0;
    slots_[hole].value = Value{};  // drop what it held now, not when the slot is reused
  }

  void rehash(std::size_t capacity) {
    std::vector<Slot> old(capacity);
    old.swap(slots_);
    for (Slot& slot : old) {
      if (slot.key != 0) place(slot.key, std::move(slot.value));
    }
  }

  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

}  // namespace troupe::detail
