#include "troupe/core/msg.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <set>
#include <thread>
#include <vector>

#include "troupe/core/channel.hpp"
#include "troupe/core/detail/result_state.hpp"
#include "troupe/core/error.hpp"

namespace troupe {
namespace {

TEST(MsgTest, DefaultIsEmpty) {
  Msg m;
  EXPECT_TRUE(m.empty());
  EXPECT_TRUE(m.id().empty());
  EXPECT_FALSE(Msg("a", "hi").empty());
}

TEST(MsgTest, ConstructorFillsIdTimestampAndRole) {
  Msg m("alice", "hello");
  EXPECT_EQ(m.name(), "alice");
  EXPECT_EQ(m.content(), "hello");
  EXPECT_EQ(m.role(), "assistant");
  EXPECT_EQ(m.id().size(), kMsgIdLength);
  EXPECT_GT(m.timestamp_ns(), 0);
  EXPECT_EQ(Msg("u", "x", "user").role(), "user");
}

TEST(MsgTest, IdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(new_msg_id());
  EXPECT_EQ(ids.size(), 10000u);
}

TEST(MsgTest, IdsAreShortSafeTextThatNeedsNoAllocation) {
  const std::string id = new_msg_id();
  EXPECT_EQ(id.size(), kMsgIdLength);
  for (char c : id)
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << id;
  // Held in std::string's inline buffer (inside the object): a copy allocates nothing.
  const std::string copy = id;
  const auto* object = reinterpret_cast<const char*>(&copy);
  EXPECT_TRUE(copy.data() >= object && copy.data() < object + sizeof(copy));
}

TEST(MsgTest, IdsStayUniqueAcrossThreads) {
  // Each thread draws its own prefix: ids made at once on several threads never meet.
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50000;
  std::vector<std::vector<std::string>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(new_msg_id());
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> ids;
  for (const auto& list : made) ids.insert(list.begin(), list.end());
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(MsgTest, ForkedChildDoesNotRepeatParentIds) {
  (void)new_msg_id();  // seed this thread's generator before the fork
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string id = new_msg_id();
    (void)!::write(fds[1], id.data(), id.size());
    ::_exit(0);
  }
  std::string parent_id = new_msg_id();
  std::string child_id(kMsgIdLength, '\0');
  ASSERT_EQ(::read(fds[0], child_id.data(), kMsgIdLength), static_cast<ssize_t>(kMsgIdLength));
  ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_NE(parent_id, child_id);
}

TEST(MsgTest, SameContentIgnoresIdAndTimestamp) {
  Msg a("n", "c", "user");
  Msg b("n", "c", "user");
  EXPECT_NE(a, b);  // different ids
  EXPECT_TRUE(a.same_content_as(b));
  b.set_metadata(R"({"k":1})");
  EXPECT_FALSE(a.same_content_as(b));
  Msg c = a;
  c.set_payload({std::byte{1}});
  EXPECT_FALSE(a.same_content_as(c));
  Msg d = a;
  d.set_url({"http://x"});
  EXPECT_FALSE(a.same_content_as(d));
}

// A result may itself be a placeholder (a local reply() may return one): reads, copies and
// edits see through both to the value.
TEST(MsgTest, APlaceholderWhoseResultIsAPlaceholderReadsTheInnerValue) {
  auto inner = std::make_shared<detail::ResultState>();
  inner->resolve(Msg("inner", "value"));
  auto outer = std::make_shared<detail::ResultState>();
  outer->resolve(Msg::placeholder(inner));
  const Msg m = Msg::placeholder(outer);
  EXPECT_EQ(m.content(), "value");
  EXPECT_EQ(m.name(), "inner");
  EXPECT_FALSE(m.resolved().is_placeholder());
  EXPECT_EQ(m.resolved().content(), "value");
  Msg edited = m;
  edited.set_role("user");
  EXPECT_FALSE(edited.is_placeholder());
  EXPECT_EQ(edited.content(), "value");
  EXPECT_EQ(edited.role(), "user");
}

// Copies of placeholders (which skip the empty fields) and of plain messages, made by
// construction and by assignment, over targets of either kind: each reads as its source.
TEST(MsgTest, CopiesOfPlaceholdersAndPlainMessagesReadAsTheirSource) {
  auto state = std::make_shared<detail::ResultState>();
  const Msg pending = Msg::placeholder(state);
  Msg plain("alice", std::string(100, 'x'));  // a content past the inline buffer
  plain.set_url({"http://a"}).set_payload({std::byte{7}});
  Msg copied_pending = pending;
  Msg copied_plain = plain;
  EXPECT_TRUE(copied_pending.is_placeholder());
  EXPECT_FALSE(copied_pending.ready());
  EXPECT_EQ(copied_plain, plain);
  Msg target = plain;
  target = pending;  // plain -> placeholder: its own fields go
  EXPECT_TRUE(target.is_placeholder());
  Msg other = pending;
  other = plain;  // placeholder -> plain
  EXPECT_FALSE(other.is_placeholder());
  EXPECT_EQ(other, plain);
  const Msg& same = other;
  other = same;  // self-assignment keeps it
  EXPECT_EQ(other, plain);
  state->resolve(Msg("bob", "the answer"));
  EXPECT_EQ(copied_pending.content(), "the answer");
  EXPECT_EQ(target.content(), "the answer");
  EXPECT_EQ(target.name(), "bob");
  // An edited copy of a settled placeholder is plain, and the result keeps its value.
  Msg edited = pending;
  edited.set_content("mine");
  EXPECT_FALSE(edited.is_placeholder());
  EXPECT_EQ(edited.name(), "bob");
  EXPECT_EQ(pending.content(), "the answer");
  Msg edited_copy = edited;
  EXPECT_EQ(edited_copy.content(), "mine");
}

TEST(MsgTest, APlaceholderWithADeadlineTimesOutWithoutARuntime) {
  auto state = std::make_shared<detail::ResultState>();  // no driver: no runtime pumps it
  state->deadline = Clock::now() + std::chrono::milliseconds(50);
  const Msg m = Msg::placeholder(state);
  EXPECT_THROW((void)m.content(), Timeout);
}

}  // namespace
}  // namespace troupe
