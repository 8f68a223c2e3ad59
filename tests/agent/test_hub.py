"""StreamHub: non-blocking fan-out, queue policies, decode once (off the ingest thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
import pytest
from conftest import wait_for

from agent.fanout.consumer import Consumer, ConsumerError
from agent.fanout.hub import DecodedFrame, Decoder, HubError, PyAVDecoder, StreamHub
from agent.frames import Stamp, StampedPacket, StreamInfo

FPS = 15
FRAME_US = 1_000_000 // FPS
GOP = 10


def info(generation: int = 1, width: int = 64, height: int = 48) -> StreamInfo:
    return StreamInfo(
        camera="cam1",
        stream="main",
        codec="h264",
        width=width,
        height=height,
        time_base=Fraction(1, 90_000),
        extradata=None,
        fps=float(FPS),
        generation=generation,
    )


def h264(n: int, width: int = 64, height: int = 48) -> list[av.Packet[Any]]:
    """Real Annex-B H.264 (no B-frames, a keyframe every GOP frames) with 90 kHz pts."""
    enc = av.CodecContext.create("libx264", "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base, enc.framerate, enc.gop_size = Fraction(1, FPS), Fraction(FPS), GOP
    enc.options = {"bframes": "0", "tune": "zerolatency", "keyint_min": str(GOP)}
    packets: list[av.Packet[Any]] = []
    for i in range(n + 1):
        frame = None
        if i < n:
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 7) % 256]) * plane.buffer_size)
            frame.pts = i
        packets += enc.encode(frame)
    for p in packets:
        assert p.pts is not None
        p.pts = p.dts = p.pts * 90_000 // FPS
    return packets


def stamped(packets: list[av.Packet[Any]], stream: StreamInfo | None = None) -> list[StampedPacket]:
    stream = stream or info()
    return [
        StampedPacket(
            info=stream,
            stamp=Stamp(seq=i, capture_us=i * FRAME_US, synced=True, reanchored=i == 0),
            packet=p,
            keyframe=p.is_keyframe,
            pts=p.pts,
        )
        for i, p in enumerate(packets)
    ]


def fake(n: int, gop: int = GOP, stream: StreamInfo | None = None) -> list[StampedPacket]:
    """Packets that are never decoded for real: numbered payloads, a keyframe every `gop`."""
    packets = []
    for i in range(n):
        p = av.Packet(i.to_bytes(4, "big"))
        p.pts = i * 6000
        p.is_keyframe = i % gop == 0
        packets.append(p)
    return stamped(packets, stream)


class FakeDecoder:
    """One frame per packet (pts copied), optionally `delay` packets late; counts its calls."""

    def __init__(self, delay: int = 0, gate: threading.Event | None = None) -> None:
        self.calls: list[int | None] = []
        self.delay, self.gate = delay, gate
        self._held: list[av.VideoFrame] = []

    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        self.calls.append(packet.pts)
        if self.gate is not None:
            self.gate.wait(10)
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = packet.pts
        self._held.append(frame)
        return [self._held.pop(0)] if len(self._held) > self.delay else []


class Factory:
    def __init__(self, make: Callable[[StreamInfo, bool], Decoder]) -> None:
        self.made: list[tuple[int, bool]] = []
        self.decoders: list[Decoder] = []
        self._make = make

    def __call__(self, stream: StreamInfo, keyframes_only: bool) -> Decoder:
        self.made.append((stream.generation, keyframes_only))
        decoder = self._make(stream, keyframes_only)
        self.decoders.append(decoder)
        return decoder


class CountingPyAV:
    """The real decoder, counting decode calls."""

    def __init__(self, stream: StreamInfo, keyframes_only: bool) -> None:
        self.inner = PyAVDecoder(stream, keyframes_only)
        self.calls = 0

    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        self.calls += 1
        return self.inner.decode(packet)


@pytest.fixture
def hubs() -> Iterator[Callable[..., StreamHub]]:
    made: list[StreamHub] = []

    def make(**kwargs: Any) -> StreamHub:
        hub = StreamHub("cam1/main", **kwargs)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.close()


def drain(consumer: Consumer[Any], count: int, timeout: float = 10.0) -> list[Any]:
    got: list[Any] = []

    def more() -> bool:
        while (item := consumer.get(0)) is not None:
            got.append(item)
        return len(got) >= count

    wait_for(more, timeout=timeout, what=f"{consumer.name} to receive {count} items")
    return got


def publish_all(hub: StreamHub, packets: list[StampedPacket]) -> None:
    """Publish from another thread and require it to finish: publish must never block."""

    def run() -> None:
        for sp in packets:
            hub.publish(sp)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "publish blocked"


# -- packet consumers ----------------------------------------------------------------------------


def test_a_stuck_consumer_blocks_neither_publish_nor_the_others(hubs: Any) -> None:
    hub = hubs()
    stuck_live = hub.subscribe("live", "drop_oldest", 4)
    stuck_recorder = hub.subscribe("stuck-recorder", "never_drop", 8)
    reader = hub.subscribe("recorder", "never_drop", 8)
    packets = fake(2000)
    publish_all(hub, packets)
    got = drain(reader, 2000)
    assert [sp.stamp.seq for sp in got] == list(range(2000))
    assert all(a is b for a, b in zip(got, packets, strict=True))  # by reference, not copied
    live, recorder = stuck_live.stats(), stuck_recorder.stats()
    assert (live.depth, live.dropped, live.delivered) == (4, 1996, 0)
    assert (recorder.depth, recorder.dropped, recorder.high_water, recorder.alarm) == (
        2000,
        0,
        2000,
        True,
    )


def test_drop_oldest_keeps_the_newest_and_counts_what_it_dropped(hubs: Any) -> None:
    hub = hubs()
    live = hub.subscribe("live", "drop_oldest", 5)
    publish_all(hub, fake(20))
    assert [sp.stamp.seq for sp in drain(live, 5)] == [15, 16, 17, 18, 19]
    stats = live.stats()
    assert (stats.dropped, stats.delivered, stats.depth, stats.high_water) == (15, 5, 0, 5)
    assert not stats.alarm  # alarms are for never_drop queues


def test_never_drop_keeps_everything_and_its_alarm_clears_when_drained(hubs: Any) -> None:
    hub = hubs()
    recorder = hub.subscribe("recorder", "never_drop", 10)
    publish_all(hub, fake(50))
    assert recorder.stats().alarm
    assert [sp.stamp.seq for sp in drain(recorder, 50)] == list(range(50))
    stats = recorder.stats()
    assert (stats.dropped, stats.delivered, stats.high_water, stats.alarm) == (0, 50, 50, False)


def test_one_wakeup_event_tells_a_thread_that_any_of_its_consumers_has_work(hubs: Any) -> None:
    wakeup = threading.Event()
    a_hub, b_hub = hubs(), hubs()
    a = a_hub.subscribe("rec", "never_drop", 10, wakeup=wakeup)
    b = b_hub.subscribe("rec", "never_drop", 10, wakeup=wakeup)
    publish_all(b_hub, fake(1))
    assert wakeup.is_set()
    wakeup.clear()
    assert a.get(timeout=0) is None and b.get(timeout=0) is not None
    assert not wakeup.is_set()
    publish_all(a_hub, fake(1))
    assert wakeup.is_set()


def test_take_hands_over_a_batch_oldest_first_without_waiting(hubs: Any) -> None:
    hub = hubs()
    recorder = hub.subscribe("recorder", "never_drop", 10)
    assert recorder.take(5) == []
    publish_all(hub, fake(5))
    assert [sp.stamp.seq for sp in recorder.take(3)] == [0, 1, 2]
    assert [sp.stamp.seq for sp in recorder.take(10)] == [3, 4]
    assert recorder.take(10) == []
    stats = recorder.stats()
    assert (stats.delivered, stats.depth) == (5, 0)


def test_a_thread_serving_many_consumers_is_woken_for_every_packet(hubs: Any) -> None:
    """The recorder's loop: clear the shared wakeup, take from every consumer, wait. Publishers
    skip setting a wakeup that is already set; no packet may be left waiting while it sleeps."""
    wakeup = threading.Event()
    per_hub, made = 2000, [hubs() for _ in range(4)]
    consumers = [h.subscribe("rec", "never_drop", 10, wakeup=wakeup) for h in made]
    publishers = [
        threading.Thread(target=lambda h=h: [h.publish(sp) for sp in fake(per_hub)]) for h in made
    ]
    for t in publishers:
        t.start()
    got, deadline = 0, time.monotonic() + 30
    while got < per_hub * len(made) and time.monotonic() < deadline:
        wakeup.clear()
        moved = sum(len(c.take(64)) for c in consumers)
        got += moved
        if not moved and not wakeup.wait(timeout=5):
            # Asleep for the whole timeout: only right if nothing was queued meanwhile.
            assert sum(c.stats().depth for c in consumers) == 0, "a wakeup was lost"
    for t in publishers:
        t.join(5)
    assert got == per_hub * len(made)


def test_closing_unsubscribes_and_a_closed_hub_lets_consumers_drain(hubs: Any) -> None:
    hub = hubs()
    gone, stays = hub.subscribe("gone"), hub.subscribe("stays", "never_drop")
    gone.close()
    publish_all(hub, fake(3))
    assert gone.get(0) is None and gone.stats().delivered == 0
    assert [c.name for c in hub.stats().consumers] == ["stays"]
    hub.close()
    hub.publish(fake(1)[0])  # ignored, no error
    assert [sp.stamp.seq for sp in stays] == [0, 1, 2]  # iteration ends once drained
    with pytest.raises(HubError, match="closed"):
        hub.subscribe("late")


def test_get_times_out_with_none_and_wakes_on_publish(hubs: Any) -> None:
    hub = hubs()
    consumer = hub.subscribe("live")
    assert consumer.get(timeout=0.05) is None
    threading.Timer(0.05, hub.publish, [fake(1)[0]]).start()
    item = consumer.get(timeout=5)
    assert item is not None and item.stamp.seq == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "a", "policy": "lossy"}, ConsumerError, "policy must be one of"),
        ({"name": "a", "maxsize": 0}, ConsumerError, "maxsize must be >= 1"),
        ({"name": "a", "max_fps": 5.0}, HubError, "need wants_frames=True"),
        ({"name": "a", "wants_frames": True, "max_fps": 0.0}, HubError, "max_fps must be > 0"),
        ({"name": "taken"}, HubError, "a consumer named 'taken' exists"),
    ],
)
def test_bad_subscriptions_are_refused(
    hubs: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    hub = hubs()
    hub.subscribe("taken")
    with pytest.raises(error, match=message):
        hub.subscribe(**kwargs)


# -- decoding ------------------------------------------------------------------------------------


def test_three_frame_consumers_share_one_decode_per_packet(hubs: Any) -> None:
    factory = Factory(CountingPyAV)
    hub = hubs(decoder_factory=factory)
    consumers = [
        hub.subscribe(f"detector{i}", "never_drop", 100, wants_frames=True) for i in range(3)
    ]
    recorder = hub.subscribe("recorder", "never_drop", 100)
    packets = stamped(h264(30))
    publish_all(hub, packets)
    results = [drain(c, 30) for c in consumers]
    assert drain(recorder, 30) == packets
    assert factory.made == [(1, False)]
    decoder = factory.decoders[0]
    assert isinstance(decoder, CountingPyAV) and decoder.calls == 30
    for i, sp in enumerate(packets):
        (sp0, frame0), (sp1, frame1), (sp2, frame2) = (r[i] for r in results)
        assert sp0 is sp1 is sp2 is sp  # each frame keeps its own packet's stamp
        assert frame0 is frame1 is frame2  # one decode, shared
        assert (frame0.width, frame0.height, frame0.pts) == (64, 48, sp.pts)
    decoded = hub.stats().decoder
    assert decoded is not None and (decoded.decoded, decoded.frames, decoded.errors) == (30, 30, 0)


def test_packet_consumers_alone_never_decode(hubs: Any) -> None:
    factory = Factory(CountingPyAV)
    hub = hubs(decoder_factory=factory)
    recorder = hub.subscribe("recorder", "never_drop")
    publish_all(hub, stamped(h264(20)))
    assert len(drain(recorder, 20)) == 20
    assert factory.made == [] and hub.stats().decoder is None


def test_decimation_happens_after_decoding_every_packet(hubs: Any) -> None:
    factory = Factory(CountingPyAV)
    hub = hubs(decoder_factory=factory)
    slow = hub.subscribe("detect", "never_drop", 100, wants_frames=True, max_fps=5.0)
    full = hub.subscribe("live", "never_drop", 100, wants_frames=True)
    publish_all(hub, stamped(h264(30)))
    assert len(drain(full, 30)) == 30
    frames = drain(slow, 10)
    stamps = [sp.stamp.capture_us for sp, _ in frames]
    assert [s // FRAME_US for s in stamps] == list(range(0, 30, 3))  # 5 of 15 fps
    assert slow.stats().skipped == 20
    decoder = factory.decoders[0]
    assert isinstance(decoder, CountingPyAV) and decoder.calls == 30  # P-frames still decoded


def test_only_keyframes_are_decoded_when_every_frame_consumer_wants_only_them(hubs: Any) -> None:
    factory = Factory(CountingPyAV)
    hub = hubs(decoder_factory=factory)
    snapshots = hub.subscribe("snapshot", "never_drop", wants_frames=True, keyframes_only=True)
    packets = stamped(h264(30))
    publish_all(hub, packets)
    frames = drain(snapshots, 3)
    assert [sp.stamp.seq for sp, _ in frames] == [0, 10, 20]
    assert factory.made == [(1, True)]
    decoder = factory.decoders[0]
    assert isinstance(decoder, CountingPyAV) and decoder.calls == 3


def test_a_decoder_that_falls_behind_skips_to_the_next_keyframe_without_blocking(
    hubs: Any,
) -> None:
    gate = threading.Event()
    factory = Factory(lambda s, k: FakeDecoder(gate=gate))
    hub = hubs(decoder_factory=factory, decode_queue=5)
    detect = hub.subscribe("detect", "never_drop", 1000, wants_frames=True)
    recorder = hub.subscribe("recorder", "never_drop", 1000)
    packets = fake(45)
    hub.publish(packets[0])
    wait_for(lambda: factory.decoders, what="the decoder to start on packet 0")
    publish_all(hub, packets[1:])  # while the decoder is stuck on packet 0
    assert len(drain(recorder, 45)) == 45  # recording lost nothing
    gate.set()
    # Each overflow of the 5-packet queue drops it and waits for the next keyframe; only the
    # last keyframe's run (40-44) was still queued at the end.
    assert [sp.stamp.seq for sp, _ in drain(detect, 6)] == [0, 40, 41, 42, 43, 44]
    assert detect.get(0.1) is None
    stats = hub.stats().decoder
    assert stats is not None and (stats.decoded, stats.skipped, stats.depth) == (6, 39, 0)


def test_a_delayed_frame_keeps_the_stamp_of_the_packet_it_came_from(hubs: Any) -> None:
    hub = hubs(decoder_factory=Factory(lambda s, k: FakeDecoder(delay=2)))
    detect = hub.subscribe("detect", "never_drop", wants_frames=True)
    publish_all(hub, fake(10))
    for sp, frame in drain(detect, 8):
        assert frame.pts == sp.pts


def test_a_new_generation_gets_a_new_decoder_from_its_first_keyframe(hubs: Any) -> None:
    factory = Factory(lambda s, k: FakeDecoder())
    hub = hubs(decoder_factory=factory)
    detect = hub.subscribe("detect", "never_drop", wants_frames=True)
    first = fake(5)
    # The new connection starts mid-GOP: its packets before a keyframe cannot be decoded.
    second = fake(12, stream=info(generation=2))[3:]
    publish_all(hub, first + second)
    got = [sp for sp, _ in drain(detect, 7)]
    assert [(sp.info.generation, sp.stamp.seq) for sp in got] == [
        *((1, i) for i in range(5)),
        *((2, i) for i in range(10, 12)),
    ]
    assert factory.made == [(1, False), (2, False)]
    decoder = hub.stats().decoder
    assert decoder is not None and decoder.skipped == 7  # seq 3..9 of generation 2


def test_frames_resume_at_a_keyframe_after_a_time_without_frame_consumers(hubs: Any) -> None:
    factory = Factory(lambda s, k: FakeDecoder())
    hub = hubs(decoder_factory=factory)
    hub.subscribe("first", wants_frames=True).close()
    packets = fake(25)
    publish_all(hub, packets[:5])  # nobody wants frames: not decoded
    late = hub.subscribe("late", "never_drop", wants_frames=True)
    publish_all(hub, packets[5:])
    # Packets 5-9 continue a GOP whose start the decoder never saw: decoding resumes at 10.
    assert [sp.stamp.seq for sp, _ in drain(late, 15)] == list(range(10, 25))
    decoder = factory.decoders[0]
    assert isinstance(decoder, FakeDecoder) and decoder.calls[0] == packets[10].pts
    stats = hub.stats().decoder
    assert stats is not None and (stats.decoded, stats.skipped) == (15, 5)


def test_real_decoder_output_is_delivered_as_frames(hubs: Any) -> None:
    hub = hubs()
    live = hub.subscribe("live", "never_drop", wants_frames=True)
    publish_all(hub, stamped(h264(12, 96, 64), info(width=96, height=64)))
    frames: list[DecodedFrame] = drain(live, 12)
    assert {(f.width, f.height, f.format.name) for _, f in frames} == {(96, 64, "yuv420p")}
