#pragma once
// Layout of a rendezvous segment, "troupe.port.<port>": how a client on this host finds the
// server listening on a local-mode port and hands it a channel.
//
//   0     SegmentHeader (128)          creator = the server process
//   128   RendezvousControl (128)      server_pid, signal (futex word), sleeping flag
//   256   ConnectSlot[kConnectSlots]   (256 bytes each)
//
// A client creates its channel segment, then claims a free slot (CAS kFree -> kWriting), writes
// the channel's name, publishes it (store kReady, release), and wakes the server. The server
// takes the name (acquire), frees the slot (store kFree, release) and attaches.
#include <atomic>
#include <cstdint>

#include "troupe/shm/segment_layout.hpp"

namespace troupe::shm {

inline constexpr std::size_t kConnectSlots = 64;
inline constexpr std::size_t kChannelNameBytes = 200;

enum SlotState : std::uint32_t { kSlotFree = 0, kSlotWriting = 1, kSlotReady = 2 };

struct alignas(kFalseSharingRange) RendezvousControl {
  std::atomic<std::int32_t> server_pid;
  std::atomic<std::uint32_t> signal;    ///< futex word: bumped by a client after kReady
  std::atomic<std::uint32_t> sleeping;  ///< 1 while the server sleeps on `signal`
};

struct alignas(kFalseSharingRange) ConnectSlot {
  /// Invariant: kFree -> kWriting by one client's CAS; kWriting -> kReady by that client;
  /// kReady -> kFree by the server. SYNC POINT: kReady is stored with release after the name
  /// and read with acquire by the server; kFree likewise hands the slot back.
  std::atomic<std::uint32_t> state;
  std::int32_t client_pid;
  char channel_name[kChannelNameBytes];
};

static_assert(sizeof(RendezvousControl) == kFalseSharingRange);
static_assert(sizeof(ConnectSlot) == 256);

inline constexpr std::size_t kRendezvousControlOffset = sizeof(SegmentHeader);
inline constexpr std::size_t kSlotsOffset = kRendezvousControlOffset + sizeof(RendezvousControl);
inline constexpr std::size_t kRendezvousSize = kSlotsOffset + kConnectSlots * sizeof(ConnectSlot);

}  // namespace troupe::shm
