"""Stream plumbing for residual skip paths: a fork that copies one stream to several, and a FIFO
that holds the beats of one branch while the other computes."""

import operator

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .stream import count_below

__all__ = ["StreamFork", "StreamFifo"]


class StreamFork(wiring.Component):
    """Copies every beat of ``i`` to each of ``o0 … o{count−1}``.

    Output ``k`` offers the beat until it takes it (``o<k>.valid = i.valid & ~taken[k]``);
    a per-output ``taken`` bit remembers that, so a fast output does not take a beat twice
    while a slow one stalls. The input beat transfers in the cycle the last output still
    missing takes it (``i.ready = ∧_k (taken[k] | o<k>.ready)``), and the ``taken`` bits clear.
    No ``valid`` depends on any ``ready``; ``i.ready`` depends combinationally on the outputs'
    ``ready`` (put a :class:`~hwgen.hw.stream.StreamRegister` on a branch to cut the path).

    Latency 0: a beat offered on ``i`` is offered on every output in the same cycle.

    Parameters
    ----------
    layout : ShapeLike
        The payload shape (usually a :func:`~hwgen.hw.stream.frame_layout`).
    count : int
        The number of outputs, at least 1.

    Members
    -------
    i : In(stream.Signature(layout))
    o0, o1, … : Out(stream.Signature(layout))
    """

    latency = 0

    def __init__(self, layout, count=2):
        self._count = operator.index(count)
        if self._count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        signature = {"i": In(stream.Signature(layout))}
        signature.update({f"o{k}": Out(stream.Signature(layout)) for k in range(self._count)})
        super().__init__(signature)

    @property
    def count(self):
        return self._count

    @property
    def outputs(self):
        """The output streams ``[o0, o1, …]``."""
        return [getattr(self, f"o{k}") for k in range(self._count)]

    def elaborate(self, platform):
        m = Module()
        done = []
        for index, port in enumerate(self.outputs):
            taken = Signal(name=f"taken{index}")
            m.d.comb += [port.payload.eq(self.i.payload), port.valid.eq(self.i.valid & ~taken)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += taken.eq(0)
            with m.Elif(port.valid & port.ready):
                m.d.sync += taken.eq(1)
            done.append(taken | port.ready)
        ready = done[0]
        for term in done[1:]:
            ready = ready & term
        m.d.comb += self.i.ready.eq(ready)
        return m


class StreamFifo(wiring.Component):
    """A first-in first-out queue of up to ``depth`` beats.

    ``i.ready`` is high exactly when fewer than ``depth`` beats are held, and is a flip-flop
    (no logic, and no path from ``o.ready``, in front of it); ``o.valid`` and ``o.payload``
    come from registers too. The beats sit in a ``depth − 1``-word :class:`Memory` with a
    synchronous read port (block-RAM friendly) plus the output register; a beat arriving when
    the memory is empty and the output register free (or being emptied) goes straight to the
    output register.

    Latency 1: a beat accepted in cycle ``t`` by an empty FIFO is offered in cycle ``t + 1``.
    Throughput: one beat per cycle for ``depth ≥ 2`` (a beat passing straight through is held
    one cycle, so the queue never fills while ``o`` takes every beat); ``depth == 1`` is a
    single register that accepts every other cycle; ``depth == 0`` is a wire (latency 0).

    Parameters
    ----------
    layout : ShapeLike
        The payload shape (usually a :func:`~hwgen.hw.stream.frame_layout`).
    depth : int
        Beats the FIFO holds; ``i`` never waits while fewer are held.

    Members
    -------
    i : In(stream.Signature(layout))
    o : Out(stream.Signature(layout))
    level : Out(range(depth + 1))
        Beats held.
    """

    def __init__(self, layout, depth):
        self._layout = layout
        self._depth = operator.index(depth)
        if self._depth < 0:
            raise ValueError(f"depth must be a non-negative integer, not {depth!r}")
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
            "level": Out(range(self._depth + 1)),
        })

    @property
    def depth(self):
        return self._depth

    @property
    def latency(self):
        """Cycles from a beat's transfer on ``i`` to its offer on ``o``, FIFO empty: 1 (0 when
        ``depth == 0``)."""
        return 1 if self._depth else 0

    def elaborate(self, platform):
        m = Module()
        if self._depth == 0:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m

        stored = Signal(range(self._depth))  # beats in the memory, not yet read
        advance = ~self.o.valid | self.o.ready
        write = self.i.valid & self.i.ready
        take = self.o.valid & self.o.ready
        bypass = Signal()  # the incoming beat goes straight to the output register
        read = Signal()
        m.d.comb += [
            bypass.eq(write & advance & (stored == 0)),
            read.eq(advance & (stored != 0)),
        ]
        # ``level`` (= stored + o.valid) is counted apart so that ready is a flip-flop chosen
        # by the next push/pop, not a compare of that sum.
        m.d.comb += self.i.ready.eq(count_below(m, self.level, self._depth, write, take))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(read | bypass)

        # The output payload is either the bypass register or the read port's data register.
        bypass_data = Signal(self._layout)
        from_memory = Signal()
        with m.If(bypass):
            m.d.sync += [bypass_data.eq(self.i.payload), from_memory.eq(0)]
        with m.Elif(read):
            m.d.sync += from_memory.eq(1)
        if self._depth == 1:
            m.d.comb += self.o.payload.eq(bypass_data)
            return m

        words = self._depth - 1
        m.submodules.storage = storage = memory.Memory(shape=self._layout, depth=words, init=[])
        write_port, read_port = storage.write_port(), storage.read_port()
        produce, consume = Signal(range(words)), Signal(range(words))
        push = write & ~bypass
        m.d.comb += [
            write_port.addr.eq(produce), write_port.data.eq(self.i.payload),
            write_port.en.eq(push),
            read_port.addr.eq(consume), read_port.en.eq(read),
            self.o.payload.eq(Mux(from_memory, read_port.data, bypass_data)),
        ]
        with m.If(push):
            m.d.sync += produce.eq(Mux(produce == words - 1, 0, produce + 1))
        with m.If(read):
            m.d.sync += consume.eq(Mux(consume == words - 1, 0, consume + 1))
        m.d.sync += stored.eq(stored + push - read)
        return m
