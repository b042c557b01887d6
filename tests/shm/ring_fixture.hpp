#pragma once
// A ring in ordinary (process-local) memory, laid out as in a segment: for unit tests and for
// two threads sharing one mapping.
#include <cstring>
#include <memory>
#include <new>

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

}  // namespace troupe::shm::test
