"""A child's output cut into lines: the fast path (whole ordinary lines of a read, split at
once) cuts exactly as the line-by-line path does, whatever the bytes and however they are read."""
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpipeline.executors.output_lines import LineCutter

pieces = st.one_of(
    st.sampled_from([b"\n", b"\r", b"\r\n", "é".encode(), "日本".encode(), b"\xff", b"x" * 70, b"step 1 loss 0.5"]),
    st.binary(max_size=40),
)


class LineByLine(LineCutter):
    def _cut(self, data: bytes) -> None:
        self._cut_slowly(data)


def cut(cutter_class, data, sizes):
    out = []
    cutter = cutter_class(out.extend, max_bytes=64)
    position = 0
    for size in sizes:
        cutter.feed(data[position : position + size])
        position += size
    cutter.feed(data[position:])
    cutter.close()
    return out


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(pieces, max_size=60), sizes=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_the_fast_path_cuts_as_the_line_by_line_path(parts, sizes):
    data = b"".join(parts)
    assert cut(LineCutter, data, sizes) == cut(LineByLine, data, sizes)


def test_one_feed_hands_its_lines_over_at_once():
    batches = []
    cutter = LineCutter(batches.append)
    cutter.feed(b"a\nb\nc")
    cutter.feed(b"d\n")
    cutter.close()
    assert batches == [["a", "b"], ["cd"]]
