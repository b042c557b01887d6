#include "troupe/shm/segment.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <utility>

#include "troupe/core/error.hpp"

namespace bip = boost::interprocess;

namespace troupe::shm {
namespace {

constexpr std::string_view kNamePrefix = "troupe.";
constexpr const char* kShmDir = "/dev/shm";
constexpr std::time_t kUnfinishedGraceSeconds = 30;

std::string describe(const std::string& name) { return "shared-memory segment '" + name + "'"; }

// Boost.Interprocess reports errno through interprocess_exception::get_native_error().
[[noreturn]] void throw_interprocess(const bip::interprocess_exception& e,
                                     const std::string& what) {
  int err = e.get_native_error();
  if (err == ENOSPC) {
    throw Error(what + ": /dev/shm is full (ENOSPC): free space there or lower the ring size");
  }
  throw Error(what + ": " + (err != 0 ? std::strerror(err) : e.what()));
}

pid_t pid_from_name(std::string_view name) {
  if (!name.starts_with(kNamePrefix)) return 0;
  name.remove_prefix(kNamePrefix.size());
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
  return ec == std::errc{} && end != name.data() ? pid : 0;
}

}  // namespace

struct Segment::Mapping {
  bip::mapped_region region;
};

Segment::Segment(std::string name, std::unique_ptr<Mapping> mapping, bool owner) noexcept
    : name_(std::move(name)),
      mapping_(std::move(mapping)),
      base_(static_cast<std::byte*>(mapping_->region.get_address())),
      size_(mapping_->region.get_size()),
      owner_(owner) {}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      mapping_(std::move(other.mapping_)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owner_(std::exchange(other.owner_, false)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    mapping_ = std::move(other.mapping_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owner_ = std::exchange(other.owner_, false);
  }
  return *this;
}

Segment::~Segment() { release(); }

void Segment::release() noexcept {
  unlink();
  mapping_.reset();
  base_ = nullptr;
  size_ = 0;
}

void Segment::unlink() noexcept {
  if (owner_) {
    bip::shared_memory_object::remove(name_.c_str());
    owner_ = false;
  }
}

Segment Segment::create(const std::string& name, std::size_t size, SegmentKind kind) {
  if (size < sizeof(SegmentHeader)) {
    throw Error(describe(name) + ": size " + std::to_string(size) + " is below the " +
                std::to_string(sizeof(SegmentHeader)) + "-byte header");
  }
  bip::permissions owner_only;
  owner_only.set_permissions(0600);
  std::optional<bip::shared_memory_object> object;
  try {
    object.emplace(bip::create_only, name.c_str(), bip::read_write, owner_only);
  } catch (const bip::interprocess_exception& e) {
    throw_interprocess(e, "create " + describe(name));
  }
  // From here on the name exists: any failure removes it before reporting.
  struct RemoveOnFailure {
    const std::string& name;
    bool armed = true;
    ~RemoveOnFailure() {
      if (armed) bip::shared_memory_object::remove(name.c_str());
    }
  } guard{name};

  const int fd = object->get_mapping_handle().handle;
  if (::fchmod(fd, 0600) != 0) {  // umask never widens it, but be explicit about the mode
    throw Error("fchmod(" + describe(name) + ", 0600): " + std::strerror(errno));
  }
  // posix_fallocate reserves the pages now; ftruncate alone would SIGBUS on first touch when
  // /dev/shm is full. It returns the error number instead of setting errno.
  if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    if (err == ENOSPC) {
      throw Error("posix_fallocate(" + describe(name) + ", " + std::to_string(size) +
                  " bytes): /dev/shm is full (ENOSPC): free space there or lower the ring size");
    }
    throw Error("posix_fallocate(" + describe(name) + ", " + std::to_string(size) +
                " bytes): " + std::strerror(err));
  }
  std::unique_ptr<Mapping> mapping;
  try {
    mapping.reset(new Mapping{bip::mapped_region(*object, bip::read_write, 0, size)});
  } catch (const bip::interprocess_exception& e) {
    throw_interprocess(e, "map " + describe(name));
  }

  // Every field before the magic number: a concurrent list_segments() (stale clean-up in
  // another process) must not see a valid magic with a half-written creator.
  const std::uint64_t start_ticks = process_start_ticks(::getpid());
  auto* header = new (mapping->region.get_address()) SegmentHeader{};
  header->layout_version = kLayoutVersion;
  header->kind = kind;
  header->size = size;
  header->creator_pid = ::getpid();
  header->creator_start_ticks = start_ticks;
  // Not ready yet: the caller initialises its layout, then mark_ready().
  header->ready.store(0, std::memory_order_relaxed);
  // SYNC POINT: release orders the fields above before the magic for any reader of the bytes.
  std::atomic_ref<std::uint64_t>(header->magic).store(kSegmentMagic, std::memory_order_release);
  guard.armed = false;
  return Segment(name, std::move(mapping), /*owner=*/true);
}

Segment Segment::attach(const std::string& name, SegmentKind kind) {
  std::optional<bip::shared_memory_object> object;
  bip::offset_t file_size = 0;
  try {
    object.emplace(bip::open_only, name.c_str(), bip::read_write);
    object->get_size(file_size);
  } catch (const bip::interprocess_exception& e) {
    throw_interprocess(e, "attach " + describe(name));
  }
  if (file_size < static_cast<bip::offset_t>(sizeof(SegmentHeader))) {
    throw ProtocolError("attach " + describe(name) + ": " + std::to_string(file_size) +
                        " bytes is smaller than a segment header; not a Troupe segment");
  }
  std::unique_ptr<Mapping> mapping;
  try {
    mapping.reset(new Mapping{bip::mapped_region(*object, bip::read_write)});
  } catch (const bip::interprocess_exception& e) {
    throw_interprocess(e, "map " + describe(name));
  }
  const auto& h = *static_cast<const SegmentHeader*>(mapping->region.get_address());
  auto refuse = [&](const std::string& why) {
    throw ProtocolError("attach " + describe(name) + ": " + why);
  };
  if (h.magic != kSegmentMagic) refuse("bad magic number; not a Troupe segment");
  if (h.layout_version != kLayoutVersion) {
    refuse("layout version " + std::to_string(h.layout_version) + ", this build reads " +
           std::to_string(kLayoutVersion) + "; both sides must run the same Troupe version");
  }
  if (h.kind != kind) {
    refuse("segment kind " + std::to_string(static_cast<std::uint32_t>(h.kind)) + ", expected " +
           std::to_string(static_cast<std::uint32_t>(kind)));
  }
  if (h.size != static_cast<std::uint64_t>(file_size)) {
    refuse("header says " + std::to_string(h.size) + " bytes but the segment has " +
           std::to_string(file_size));
  }
  // SYNC POINT: pairs with the creator's release store of `ready` (mark_ready): everything it
  // initialised is visible after this acquire load.
  if (h.ready.load(std::memory_order_acquire) != 1) refuse("its creator has not finished it");
  return Segment(name, std::move(mapping), /*owner=*/false);
}

std::string unique_segment_name(std::string_view tag) {
  // The nonce tells this process apart from an earlier one that had the same pid and crashed
  // leaving its segments behind (O_EXCL would refuse the same name).
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::uint32_t nonce = 0;
  thread_local pid_t nonce_pid = 0;
  if (nonce_pid != ::getpid()) {
    nonce = std::random_device{}();
    nonce_pid = ::getpid();
  }
  std::ostringstream name;
  name << kNamePrefix << ::getpid() << '.' << std::hex << nonce << std::dec << '.'
       << counter.fetch_add(1, std::memory_order_relaxed);
  if (!tag.empty()) name << '.' << tag;
  return name.str();
}

std::uint64_t process_start_ticks(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  // The command name (field 2) may contain spaces and parentheses: fields resume after the
  // last ')'. starttime is field 22, the 20th after it.
  auto paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(line.substr(paren + 1));
  std::string field;
  bool ended = false;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3) ended = field == "Z" || field == "X";  // state: zombie, or dead
    // num_threads: a main thread that ended while others run reads as a zombie too, and the
    // process lives on.
    if (i == 20 && ended && std::stoul(field) <= 1) return 0;
    if (i == 22) return std::stoull(field);
  }
  return 0;
}

std::vector<SegmentInfo> list_segments() {
  std::vector<SegmentInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kShmDir, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with(kNamePrefix)) continue;
    SegmentInfo info;
    info.name = name;
    int fd = ::open(entry.path().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st {};
    SegmentHeader header{};
    if (fd >= 0) {
      if (::fstat(fd, &st) == 0) info.size = static_cast<std::size_t>(st.st_size);
      if (info.size >= sizeof(SegmentHeader) &&
          ::pread(fd, &header, sizeof header, 0) == static_cast<ssize_t>(sizeof header)) {
        info.header_valid =
            header.magic == kSegmentMagic && header.layout_version == kLayoutVersion;
      }
      ::close(fd);
    }
    info.creator_pid = info.header_valid ? header.creator_pid : pid_from_name(name);
    if (info.creator_pid > 0) {
      std::uint64_t ticks = process_start_ticks(info.creator_pid);
      info.creator_alive =
          ticks != 0 && (!info.header_valid || ticks == header.creator_start_ticks);
    } else {
      // No header yet and no pid in the name (a rendezvous being created this instant): only
      // a segment that stayed so for a while is a crashed creator's.
      info.creator_alive = std::time(nullptr) - st.st_mtime < kUnfinishedGraceSeconds;
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<std::string> remove_stale_segments() {
  std::vector<std::string> removed;
  for (const auto& info : list_segments()) {
    if (info.creator_alive) continue;
    if (bip::shared_memory_object::remove(info.name.c_str())) removed.push_back(info.name);
  }
  return removed;
}

}  // namespace troupe::shm
