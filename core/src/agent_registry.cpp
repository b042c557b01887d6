#include <typeinfo>

#include "troupe/core/agent.hpp"
#include "troupe/core/error.hpp"

namespace troupe::detail {

AgentRegistry& AgentRegistry::instance() {
  static AgentRegistry registry;
  return registry;
}

bool AgentRegistry::add(std::string class_name, const std::type_info& type, AgentFactory factory) {
  for (const Entry& e : entries_) {
    if (e.class_name == class_name) {
      throw Error("TROUPE_REGISTER_AGENT(" + class_name + "): registered twice");
    }
  }
  entries_.push_back({std::move(class_name), &type, factory});
  return true;
}

std::unique_ptr<AgentBase> AgentRegistry::create(const std::string& class_name, std::string name,
                                                 const Kwargs& kwargs) const {
  for (const Entry& e : entries_) {
    if (e.class_name == class_name) return e.factory(std::move(name), kwargs);
  }
  std::string known;
  for (const Entry& e : entries_) known += (known.empty() ? "" : ", ") + e.class_name;
  throw Error("unknown agent class '" + class_name + "' (registered: " +
              (known.empty() ? "none" : known) + "); register it with TROUPE_REGISTER_AGENT");
}

bool AgentRegistry::contains(const std::string& class_name) const {
  for (const Entry& e : entries_) {
    if (e.class_name == class_name) return true;
  }
  return false;
}

std::string AgentRegistry::name_of(const std::type_info& type) const {
  for (const Entry& e : entries_) {
    if (*e.type == type) return e.class_name;
  }
  return {};
}

std::vector<std::string> AgentRegistry::class_names() const {
  std::vector<std::string> names;
  for (const Entry& e : entries_) names.push_back(e.class_name);
  return names;
}

}  // namespace troupe::detail
