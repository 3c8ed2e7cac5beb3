"""Multiplier kinds and the arithmetic of packing several products into one DSP multiplier.

Shared by the planner (which picks a kind per layer), the cost model (which counts what a kind
takes) and the hardware (which builds it); pure integer arithmetic, no HDL.

Kinds (:data:`MULTIPLIER_KINDS`):

- ``"dsp"``: one product per hard multiplier (yosys maps it; on the ECP5 target a
  ``MULT18X18D`` primitive).
- ``"dsp-packed"``: ``count`` products that share one operand (the activation ``x``) from a
  single hard multiplier: ``P = x · (w_0 + w_1·2^S + … + w_{n−1}·2^{(n−1)S})``. Each field
  ``x·w_i`` is a signed ``S``-bit value (``S`` = the exact product width), and field ``i`` is
  recovered from ``P`` alone as ``sext(P[iS : (i+1)S] + P[iS − 1])`` (the sign correction: the
  fields below borrow one from field ``i`` exactly when bit ``iS − 1`` is set). The packed
  multiplicand is a constant per weight word, so it is computed here and stored in the ROM.
- ``"lut"``: a fabric multiplier (partial products and an adder tree), no DSP at all.

See ``docs/arithmetic.md`` for the derivation and the limits.
"""

import dataclasses

from .errors import HwgenError

__all__ = ["MULTIPLIER_KINDS", "DSP_PORTS", "Packing", "packing", "max_pack", "pack_groups",
           "pack_members", "pack_word", "unpack_product", "check_kind"]

MULTIPLIER_KINDS = ("dsp", "dsp-packed", "lut")

# Signed operand widths (a, b) of one hard multiplier per family: ECP5 MULT18X18D, iCE40
# SB_MAC16 (16×16), Xilinx DSP48E1 (25×18) and DSP48E2 (27×18). A plan without a board packs
# for 18×18, which every family but iCE40 holds.
DSP_PORTS = {"ecp5": (18, 18), "ice40": (16, 16), "xc7": (25, 18), "xcup": (27, 18)}
DEFAULT_PORTS = (18, 18)


def check_kind(kind, where=""):
    """``kind`` if it is one of :data:`MULTIPLIER_KINDS`, else :class:`HwgenError`."""
    if kind not in MULTIPLIER_KINDS:
        raise HwgenError(f"{where}multiplier kind must be one of "
                         f"{', '.join(map(repr, MULTIPLIER_KINDS))}, not {kind!r}")
    return kind


def _signed_width(bits, signed):
    """Bits of the signed operand that holds a ``bits``-wide value (one more if unsigned)."""
    return bits + (not signed)


@dataclasses.dataclass(frozen=True)
class Packing:
    """``count`` products ``x · w_i`` from one multiplier of ``x`` (``shared_bits``, signed) by
    the packed constant (``packed_bits``, signed); field ``i`` starts at bit ``i·shift``."""

    count: int
    shift: int
    shared_bits: int
    weight_bits: int
    narrow: bool = True

    @property
    def packed_bits(self):
        """Signed width of ``Σ w_i · 2^(i·shift)``: with narrow-range weights the top weight's
        width, else one more bit (the most negative weight and a negative one below it)."""
        return (self.count - 1) * self.shift + self.weight_bits + (
            self.count > 1 and not self.narrow)

    @property
    def product_bits(self):
        """Signed width of one field, the exact product ``x · w_i``."""
        return self.shift


def packing(weight_bits, act_bits, act_signed, count, *, narrow=True):
    """The :class:`Packing` of ``count`` products of a signed ``weight_bits`` weight by an
    ``act_bits`` activation (``act_signed`` or not). Each field is the exact product width:
    with ``narrow`` weights (hwgen's contract: no ``−2^(w−1)``), ``|x·w| < 2^(a+w−2)`` for a
    signed ``a``-bit ``x``, so ``a + w − 1`` bits; with full-range weights ``a + w``. Every code
    of both operands in those ranges is exact."""
    shared = _signed_width(act_bits, act_signed)
    return Packing(count, shared + weight_bits - narrow, shared, weight_bits, narrow)


def max_pack(weight_bits, act_bits, act_signed, ports=DEFAULT_PORTS, *, narrow=True):
    """The most products one multiplier with signed operand widths ``ports`` computes at
    once: the shared activation on one port, the packed weights on the other (either way
    round), ``1`` when not even two fit."""
    best = 1
    for shared_port, packed_port in (ports, ports[::-1]):
        count = 1
        while True:
            candidate = packing(weight_bits, act_bits, act_signed, count + 1, narrow=narrow)
            if candidate.shared_bits > shared_port or candidate.packed_bits > packed_port:
                break
            count += 1
        best = max(best, count)
    return best


def pack_groups(lanes, pack):
    """Packed multipliers per column of ``lanes`` PEs that share an operand, ``pack`` products
    each: ``⌈lanes / pack⌉`` (the last one computes the ``lanes mod pack`` left over, its
    other fields unused)."""
    return -(-lanes // pack)


def pack_members(lanes, pack):
    """The PEs of each of the :func:`pack_groups` packed multipliers of ``lanes`` PEs: one
    ``range`` per multiplier, ``pack`` consecutive PEs (the last one fewer where ``pack``
    does not divide ``lanes``); field ``k`` of multiplier ``g`` is PE ``g·pack + k``."""
    return [range(start, min(lanes, start + pack)) for start in range(0, lanes, pack)]


def pack_word(weights, layout):
    """The packed multiplicand ``Σ w_i · 2^(i·shift)`` of ``weights`` (at most
    ``layout.count`` ints; the fields of the missing ones hold zero)."""
    assert len(weights) <= layout.count
    return sum(int(weight) << (index * layout.shift) for index, weight in enumerate(weights))


def unpack_product(product, layout):
    """The fields ``x · w_i`` of a packed product ``P`` (an int), by the rule the hardware uses:
    ``sext(P[iS:(i+1)S] + P[iS − 1])``."""
    shift = layout.shift
    fields = []
    for index in range(layout.count):
        base = index * shift
        carry = (product >> (base - 1)) & 1 if index else 0
        field = ((product >> base) + carry) & ((1 << shift) - 1)
        fields.append(field - (1 << shift) if field >> (shift - 1) else field)
    return fields
