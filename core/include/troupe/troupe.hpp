#pragma once
// Everything a Troupe user includes.
#include "troupe/core/channel.hpp"
#include "troupe/core/error.hpp"
#include "troupe/core/msg.hpp"
#include "troupe/core/wire.hpp"
