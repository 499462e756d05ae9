"""The coalescer sends the first piece at once, then at most one delta per interval, and loses nothing."""

from workers.deltas import DeltaCoalescer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_pieces_within_an_interval_are_joined_and_nothing_is_lost():
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    clock = Clock()
    deltas = DeltaCoalescer(send, 0.1, clock)
    await deltas.add("Hola")  # the first piece goes out at once
    clock.now = 0.03
    await deltas.add(", ¿en")
    clock.now = 0.06
    await deltas.add(" qué")
    assert sent == ["Hola"]
    clock.now = 0.1
    await deltas.add(" puedo")  # an interval after the last send: the held pieces go with it
    clock.now = 0.15
    await deltas.add(" ayudarte?")
    await deltas.flush()
    await deltas.flush()  # nothing pending: nothing sent
    assert sent == ["Hola", ", ¿en qué puedo", " ayudarte?"]
    assert "".join(sent) == "Hola, ¿en qué puedo ayudarte?"


async def test_a_zero_interval_sends_every_piece():
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    deltas = DeltaCoalescer(send, 0.0, Clock())
    for piece in ["a", "b", "c"]:
        await deltas.add(piece)
    assert sent == ["a", "b", "c"]
