#pragma once
// Troupe's own rings in an anonymous shared mapping, created before fork: the benchmarks that
// measure the ring without the channel or the runtime around it.
#include <cstddef>
#include <new>

#include "support/raw_ring.hpp"
#include "troupe/shm/spsc_ring.hpp"

namespace troupe::bench {

/// `count` Troupe rings of `capacity` bytes in one shared mapping, each laid out as in a
/// channel segment: its RingControl, then its data area.
class TroupeRings {
 public:
  TroupeRings(std::size_t count, std::size_t capacity)
      : stride_(sizeof(shm::RingControl) + capacity), mapping_(count * stride_) {
    for (std::size_t i = 0; i < count; ++i) {
      shm::initialize_ring(*new (mapping_.at(i * stride_)) shm::RingControl{}, capacity);
    }
  }
  shm::RingControl& control(std::size_t i) const {
    return *reinterpret_cast<shm::RingControl*>(mapping_.at(i * stride_));
  }
  shm::SpscRingProducer producer(std::size_t i) const { return {control(i), data(i)}; }
  shm::SpscRingConsumer consumer(std::size_t i) const { return {control(i), data(i)}; }

 private:
  std::byte* data(std::size_t i) const {
    return mapping_.at(i * stride_ + sizeof(shm::RingControl));
  }
  std::size_t stride_;
  SharedMapping mapping_;
};

}  // namespace troupe::bench
