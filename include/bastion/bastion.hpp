// bastion/bastion.hpp: the umbrella header; includes the whole public API of bastion.
#pragma once

#include <bastion/config.hpp>

#include <bastion/actor/actor.hpp>
#include <bastion/executor/blocking.hpp>
#include <bastion/executor/runtime.hpp>
#include <bastion/executor/runtime_config.hpp>
#include <bastion/executor/sleep.hpp>
#include <bastion/executor/spawn.hpp>
#include <bastion/executor/stats.hpp>
#include <bastion/executor/topology.hpp>
#include <bastion/io/file.hpp>
#include <bastion/io/tcp.hpp>
#include <bastion/lightproc/errors.hpp>
#include <bastion/lightproc/fiber.hpp>
#include <bastion/lightproc/join_handle.hpp>
#include <bastion/lightproc/proc_stack.hpp>
#include <bastion/lightproc/task.hpp>
#include <bastion/lightproc/this_proc.hpp>
#include <bastion/log.hpp>
#include <bastion/version.hpp>
