"""The agent answers the power plant's commitments and its plan honours the confirmed ones (real
mosquitto, real planner, a stand-in for the community manager's side of the power plant)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from uuid import UUID, uuid4

import numpy as np

from hems.protocol.codec import Message, decode, encode
from hems.protocol.messages import Allocation
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.power_plant import (Commitment, CommitmentAnswer, CommitmentState, CommittedSlot, PowerPlantNotice,
                                       RequestedSlot, RequestState)
from hems.protocol.topics import HomeTopic, Topics
from hems.trading.power_plant import FlexibilityLimits
from tests.conftest import wait_for
from tests.trading.conftest import COMMUNITY, HOME, SLOT0_S, STEP_S, agent_harness, metric, snapshot, utc

#: The agent's clock starts at SLOT0 + 100 s; commitments are for the next slot (index 1 of a plan
#: made now) and the one after.
SLOT1_S = SLOT0_S + STEP_S
HOURS = STEP_S / 3600
#: OSQP's tolerance on the plan's net import (tests/mpc/test_mpc_net_bounds.py).
TOLERANCE_W = 50.0
SITE_LIMITS = dict(import_limit_w=17_000, export_limit_w=4_000)


class PowerPlantStandIn:
    """The manager's end of ``home/<home>/commitment`` and ``vpp/request``: sends commitments and
    notices, collects the homes' answers."""

    def __init__(self, broker_url: str) -> None:
        self.topics = Topics(COMMUNITY)
        self.link = MqttLink(BrokerSettings(broker_url, "standin-power-plant", reconnect_min_s=0.05,
                                            reconnect_max_s=0.2))
        self.answers: list[Message[CommitmentAnswer]] = []

    async def __aenter__(self) -> PowerPlantStandIn:
        self.link.subscribe(self.topics.all_homes(HomeTopic.COMMITMENT_ANSWER), self._on_answer)
        await self.link.start(connect_timeout_s=5)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.link.stop()

    async def send(self, commitment: Commitment) -> UUID:
        """Publish a commitment to the home; its message id."""
        message_id = uuid4()
        payload = encode(commitment, sender="manager", sent_at=datetime.now(timezone.utc), message_id=message_id)
        await self.send_raw(payload)
        return message_id

    async def send_raw(self, payload: bytes) -> None:
        assert await self.link.publish(self.topics.home(HOME, HomeTopic.COMMITMENT), payload, qos=1)

    async def notice(self) -> None:
        notice = PowerPlantNotice(request_id="req-1", price_micro=200_000, state=RequestState.DISPATCHED, slots=[
            RequestedSlot(slot_start=utc(SLOT1_S), duration_s=STEP_S, delta_w=-3_000)])
        payload = encode(notice, sender="manager", sent_at=datetime.now(timezone.utc))
        assert await self.link.publish(self.topics.vpp_request(), payload, qos=1)

    async def _on_answer(self, incoming: IncomingMessage) -> None:
        assert self.topics.parse_home(incoming.topic).home == HOME
        self.answers.append(decode(incoming.payload, (CommitmentAnswer,)))


def commitment(state: CommitmentState, revision: int, *slots: tuple[float, int, int],
               request_id: str = "req-1") -> Commitment:
    """A commitment of ``(slot_start_s, baseline_wh, change_wh)`` slots."""
    return Commitment(request_id=request_id, revision=revision, state=state, compensation_nano=1_000_000, slots=[
        CommittedSlot(slot_start=utc(start_s), duration_s=STEP_S, baseline_wh=baseline, change_wh=change)
        for start_s, baseline, change in slots])


async def subscribed(h, plant: PowerPlantStandIn) -> None:
    """Until the agent has seen a notice on vpp/request: its subscriptions are in place (the broker
    keeps nothing of this for a subscriber that was not there yet)."""
    async def seen() -> bool:
        if h.agent.power_plant.counts.notices == 0:
            await plant.notice()
        return h.agent.power_plant.counts.notices > 0
    await wait_for(seen, interval_s=0.1)


def net_import_w(step) -> float:
    return step.grid_import_w - step.grid_export_w


async def test_a_proposal_is_accepted_naming_its_revision_and_message(tmp_path, mosquitto_broker):
    async with PowerPlantStandIn(mosquitto_broker.url) as plant, agent_harness(
            tmp_path, mosquitto_broker.url, flexibility=FlexibilityLimits(max_change_w=3_000, **SITE_LIMITS)) as h:
        await subscribed(h, plant)
        message_id = await plant.send(commitment(CommitmentState.PROPOSED, 3, (SLOT1_S, -600, -250)))
        await wait_for(lambda: len(plant.answers) == 1)
        answer = plant.answers[0]
        assert answer.payload == CommitmentAnswer(request_id="req-1", revision=3, accepted=True, reason="")
        assert answer.envelope.correlation_id == message_id and answer.sender == HOME
        described = h.agent.describe()["power_plant"]
        assert (described["proposals"], described["accepted"], described["declined"]) == (1, 1, 0)
        assert described["notices"] >= 1 and h.agent.power_plant.last_notice.request_id == "req-1"
        assert metric(h.metrics, "hems_vpp_commitments_total", event="proposed") == 1
        assert metric(h.metrics, "hems_vpp_commitments_total", event="accepted") == 1
        assert metric(h.metrics, "hems_vpp_commitments_total", event="declined") is None  # none yet
        # Accepting binds nothing yet: only a confirmation does.
        assert h.agent.plan_terms(utc(SLOT0_S), 16, STEP_S).net_demand_cap_w is None
        # An older revision, or the same one again once answered, is a late or repeated delivery.
        await plant.send(commitment(CommitmentState.PROPOSED, 2, (SLOT1_S, -600, -250)))
        await plant.send(commitment(CommitmentState.PROPOSED, 3, (SLOT1_S, -600, -250)))
        await plant.send(commitment(CommitmentState.PROPOSED, 4, (SLOT1_S, -600, -100)))
        await wait_for(lambda: len(plant.answers) == 2)
        assert plant.answers[1].payload.revision == 4 and h.agent.power_plant.counts.ignored == 2


async def test_an_opted_out_home_declines_every_proposal(tmp_path, mosquitto_broker):
    limits = FlexibilityLimits(opt_out=True, **SITE_LIMITS)
    async with PowerPlantStandIn(mosquitto_broker.url) as plant, agent_harness(
            tmp_path, mosquitto_broker.url, flexibility=limits) as h:
        await subscribed(h, plant)
        first = await plant.send(commitment(CommitmentState.PROPOSED, 1, (SLOT1_S, -600, -10)))
        await plant.send(commitment(CommitmentState.PROPOSED, 1, (SLOT1_S, 100, 50), request_id="req-2"))
        await wait_for(lambda: len(plant.answers) == 2)
        for answer in plant.answers:
            assert not answer.payload.accepted and answer.payload.reason == "owner opt-out"
        assert plant.answers[0].envelope.correlation_id == first
        # A confirmation anyway is not kept, and the home says so.
        await plant.send(commitment(CommitmentState.CONFIRMED, 1, (SLOT1_S, -600, -10)))
        await wait_for(lambda: len(plant.answers) == 3)
        assert plant.answers[2].payload.reason == "owner opt-out"
        assert h.agent.plan_terms(utc(SLOT0_S), 16, STEP_S).net_demand_cap_w is None
        assert h.agent.describe()["power_plant"]["declined"] == 3


async def test_a_change_beyond_max_change_w_is_declined(tmp_path, mosquitto_broker):
    limits = FlexibilityLimits(max_change_w=800, **SITE_LIMITS)
    async with PowerPlantStandIn(mosquitto_broker.url) as plant, agent_harness(
            tmp_path, mosquitto_broker.url, flexibility=limits) as h:
        await subscribed(h, plant)
        await plant.send(commitment(CommitmentState.PROPOSED, 1, (SLOT1_S, -600, -200), (SLOT1_S + STEP_S, -600, -201)))
        await wait_for(lambda: len(plant.answers) == 1)
        answer = plant.answers[0].payload
        assert not answer.accepted and "804 W exceeds the owner's limit of 800 W" in answer.reason
        assert metric(h.metrics, "hems_vpp_commitments_total", event="declined") == 1


async def test_a_confirmed_commitment_bounds_the_next_plan_until_cancelled(tmp_path, mosquitto_broker):
    async with PowerPlantStandIn(mosquitto_broker.url) as plant, agent_harness(
            tmp_path, mosquitto_broker.url, flexibility=FlexibilityLimits(**SITE_LIMITS)) as h:
        await subscribed(h, plant)
        await h.plan()
        assert h.planning.last_inputs.net_demand_cap_w is None
        before = h.planning.current.plan.steps
        # Slot 1: export 300 W more than planned (a cap; the plan already sells the battery's energy
        # close to the export limit); slot 2: import 2 kW more (a floor).
        baseline = [round(net_import_w(before[index]) * HOURS) for index in (1, 2)]
        slots = ((SLOT1_S, baseline[0], -75), (SLOT1_S + STEP_S, baseline[1], 500))
        await plant.send(commitment(CommitmentState.PROPOSED, 1, *slots))
        await wait_for(lambda: len(plant.answers) == 1)
        assert plant.answers[0].payload.accepted
        await plant.send(commitment(CommitmentState.CONFIRMED, 1, *slots))
        await wait_for(lambda: h.agent.power_plant.counts.confirmed == 1)
        now_s = h.clock.now_s()
        assert h.planning.reason_to_plan(snapshot(now_s), now_s) == "commitment confirmed"
        await h.plan()
        inputs = h.planning.last_inputs
        cap_w, floor_w = (baseline[0] - 75) / HOURS, (baseline[1] + 500) / HOURS
        assert inputs.net_demand_cap_w == [17_000, cap_w] + [17_000] * 14  # never looser than the fuse
        assert inputs.net_demand_floor_w == [-np.inf, -np.inf, floor_w] + [-np.inf] * 13
        steps = h.planning.current.plan.steps
        assert net_import_w(steps[1]) <= cap_w + TOLERANCE_W and net_import_w(before[1]) > cap_w + 250
        assert net_import_w(steps[2]) >= floor_w - TOLERANCE_W and net_import_w(before[2]) < floor_w - 1_000
        assert h.planning.current.plan.slack.net_demand_over_cap_wh < 1.0
        assert h.agent.describe()["power_plant"]["in_force"] == {"req-1": 1}

        await plant.send(commitment(CommitmentState.CANCELLED, 1))
        await wait_for(lambda: h.agent.power_plant.counts.cancelled == 1)
        assert h.planning.reason_to_plan(snapshot(now_s), now_s) == "commitment cancelled"
        await h.plan()
        assert h.planning.last_inputs.net_demand_cap_w is None and h.planning.last_inputs.net_demand_floor_w is None
        assert h.agent.describe()["power_plant"]["in_force"] == {}
        assert metric(h.metrics, "hems_vpp_commitments_total", event="confirmed") == 1
        assert metric(h.metrics, "hems_vpp_commitments_total", event="cancelled") == 1


async def test_invalid_commitments_are_logged_and_never_acted_on(tmp_path, mosquitto_broker, caplog):
    async with PowerPlantStandIn(mosquitto_broker.url) as plant, agent_harness(
            tmp_path, mosquitto_broker.url, flexibility=FlexibilityLimits(**SITE_LIMITS)) as h:
        await subscribed(h, plant)
        valid = commitment(CommitmentState.CONFIRMED, 1, (SLOT1_S, -600, -250), (SLOT1_S + STEP_S, -600, -250))
        document = json.loads(encode(valid, sender="manager", sent_at=datetime.now(timezone.utc)))
        document["payload"]["revision"] = 0
        zero_revision = json.dumps(document).encode()
        document["payload"]["revision"] = 1
        document["payload"]["slots"].reverse()  # descending slots
        descending = json.dumps(document).encode()
        allocation = encode(Allocation(slot_start=utc(SLOT1_S), duration_s=STEP_S, mechanism="bid_curve", sequence=1,
                                       bought_wh=0, sold_wh=0, paid_nano=0, received_nano=0, fees_nano=0),
                            sender="manager", sent_at=datetime.now(timezone.utc))
        for payload in (b"not json", b"", zero_revision, descending, allocation):
            await plant.send_raw(payload)
        # Delivered in order: once the valid proposal after them is answered, they have all been handled.
        message_id = await plant.send(commitment(CommitmentState.PROPOSED, 1, (SLOT1_S, -600, -250)))
        await wait_for(lambda: len(plant.answers) == 1)
        assert plant.answers[0].envelope.correlation_id == message_id
        assert metric(h.metrics, "hems_market_messages_total", direction="in", message_type="invalid") == 5
        assert h.agent.power_plant.counts.confirmed == 0 and h.agent.power_plant.counts.proposals == 1
        terms = h.agent.plan_terms(utc(SLOT0_S), 16, STEP_S)
        assert terms.net_demand_cap_w is None and terms.net_demand_floor_w is None
        assert any("invalid Commitment" in record.getMessage() for record in caplog.records)
