# Warnings and sanitizers shared by every Troupe target, via the troupe_compile_options interface.
add_library(troupe_compile_options INTERFACE)
target_compile_options(troupe_compile_options INTERFACE
  $<BUILD_INTERFACE:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor>
  $<$<BOOL:${TROUPE_WERROR}>:$<BUILD_INTERFACE:-Werror>>
  # g++ 12 at -O3 reports false -Wrestrict overlaps inside std::string concatenation
  # (GCC bug 105329); the warning stays on for other compilers and versions.
  $<$<AND:$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:$<BUILD_INTERFACE:-Wno-restrict>>)

if(TROUPE_SANITIZE)
  string(REPLACE ";" "," _troupe_san "${TROUPE_SANITIZE}")
  message(STATUS "Troupe: building with -fsanitize=${_troupe_san}")
  add_compile_options(-fsanitize=${_troupe_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  if("undefined" IN_LIST TROUPE_SANITIZE)
    # oneTBB 2021.8's flow graph downcasts its own task types in a way -fsanitize=vptr reports
    # (_flow_graph_impl.h:368); the rest of UBSan stays on.
    add_compile_options(-fno-sanitize=vptr)
  endif()
  add_link_options(-fsanitize=${_troupe_san})
endif()

# Adds a library target troupe_<name> with alias troupe::<name>, its public headers in include/.
function(troupe_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(troupe_${name} ${ARG_SOURCES})
  add_library(troupe::${name} ALIAS troupe_${name})
  set_target_properties(troupe_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(troupe_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(troupe_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS}
                        $<BUILD_INTERFACE:troupe_compile_options>)
  target_compile_features(troupe_${name} PUBLIC cxx_std_20)
  if(TROUPE_SANITIZE)
    # An installed sanitized library needs the sanitizer's runtime in every program it is
    # linked into: the package says so, or a consumer's link fails on __asan_*/__tsan_*.
    target_link_options(troupe_${name} INTERFACE $<INSTALL_INTERFACE:-fsanitize=${_troupe_san}>)
  endif()
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
