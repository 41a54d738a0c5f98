package io.qblk.qcow2;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;

/**
 * The native buffers a flush serializes its metadata writes into: slices of one kept buffer, reused
 * by every flush (flushes run one at a time, under the flush lock), and past its end a confined arena
 * of the flushing thread, closed by {@link #reset}. A write-through commit of a few changed pages
 * (docs/ordering.md R18) so allocates nothing. Every slice starts at a multiple of its alignment
 * (4096 for O_DIRECT); the bytes are not zeroed: callers fill all they write.
 */
final class FlushBuffers implements SegmentAllocator {
    /** Bytes kept between flushes: a commit of up to 64 changed pages fits. */
    static final long KEPT = 256 << 10;

    private MemorySegment kept;
    private long used;
    private Arena overflow;

    @Override
    public MemorySegment allocate(long byteSize, long byteAlignment) {
        if (kept == null) kept = Arena.ofAuto().allocate(KEPT, CachedTable.PAGE);
        long at = (used + byteAlignment - 1) & -byteAlignment;
        if (byteAlignment <= CachedTable.PAGE && at + byteSize <= KEPT) {
            used = at + byteSize;
            return kept.asSlice(at, byteSize);
        }
        if (overflow == null) overflow = Arena.ofConfined();
        return overflow.allocate(byteSize, byteAlignment);
    }

    /** After a flush's writes: every slice handed out is free again. */
    void reset() {
        used = 0;
        if (overflow != null) {
            overflow.close();
            overflow = null;
        }
    }
}
