#pragma once
// A ring in ordinary (process-local) memory, laid out as in a segment: for unit tests and for
// two threads sharing one mapping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "troupe/shm/spsc_ring.hpp"

namespace troupe::shm::test {

class LocalRing {
 public:
  explicit LocalRing(std::size_t capacity)
      : memory_(static_cast<std::byte*>(::operator new (sizeof(RingControl) + capacity,
                                                        std::align_val_t{kFalseSharingRange}))) {
    std::memset(data(), 0, capacity);  // a ring's data area starts zeroed, as a segment's does
    control_ = new (memory_.get()) RingControl{};
    initialize_ring(*control_, capacity);
  }
  RingControl& control() { return *control_; }
  std::byte* data() { return memory_.get() + sizeof(RingControl); }
  SpscRingProducer producer() { return {*control_, data()}; }
  SpscRingConsumer consumer() { return {*control_, data()}; }

 private:
  struct Free {
    void operator()(std::byte* p) const {
      ::operator delete (p, std::align_val_t{kFalseSharingRange});
    }
  };
  std::unique_ptr<std::byte, Free> memory_;
  RingControl* control_;
};

/// `n` bytes of a pattern that `seed` shifts.
inline std::vector<std::byte> bytes(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xFF);
  return v;
}

/// Moves an empty ring's positions forward by `distance` bytes (a multiple of 8), a record at
/// a time, each published, taken and released.
inline void advance(SpscRingProducer& p, SpscRingConsumer& c, std::size_t distance) {
  while (distance > 0) {
    const std::size_t step = std::min(distance, record_size(max_record_payload(p.capacity())));
    ASSERT_TRUE(p.try_write(RecordType::kMessage, bytes(step - 8, 0)));
    p.publish();
    ASSERT_TRUE(c.try_take());
    c.publish_head();
    distance -= step;
  }
}

}  // namespace troupe::shm::test
