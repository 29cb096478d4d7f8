// bastion/actor/actor.hpp: the umbrella header of the actor layer: messages, matching,
// mailboxes, dead letters, addresses and refs, context, children groups, supervisors, the
// system, and routing (distributors, dispatchers, resizer).
#pragma once

#include <bastion/actor/address.hpp>
#include <bastion/actor/children.hpp>
#include <bastion/actor/context.hpp>
#include <bastion/actor/dead_letters.hpp>
#include <bastion/actor/dispatcher.hpp>
#include <bastion/actor/distributor.hpp>
#include <bastion/actor/mailbox.hpp>
#include <bastion/actor/match.hpp>
#include <bastion/actor/message.hpp>
#include <bastion/actor/refs.hpp>
#include <bastion/actor/resizer.hpp>
#include <bastion/actor/restart.hpp>
#include <bastion/actor/supervisor.hpp>
#include <bastion/actor/system.hpp>
