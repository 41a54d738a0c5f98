package io.qblk.nbd;

import io.qblk.target.BlockTarget;
import io.qblk.testing.MemoryBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A sparse in-memory target over the tests' {@link MemoryBackend} with 64 KiB pages as allocation
 * units: unwritten units are holes that read as zeroes, so block status has real structure to
 * report. Counts flushes for the tests.
 */
final class MemoryTarget implements BlockTarget {
    static final int UNIT = 64 << 10;
    private final long size;
    private final boolean readOnly;
    private final MemoryBackend file = new MemoryBackend(new byte[0], UNIT, "memory-target");
    final AtomicInteger flushes = new AtomicInteger();
    volatile boolean closed;

    MemoryTarget(long size, boolean readOnly) {
        this.size = size;
        this.readOnly = readOnly;
    }

    @Override public long size() { return size; }
    @Override public boolean readOnly() { return readOnly; }

    @Override public void read(long offset, MemorySegment dst) throws IOException { file.read(offset, dst); }

    @Override
    public void write(long offset, MemorySegment src, boolean fua) throws IOException {
        file.write(offset, src);
        if (fua) flushes.incrementAndGet();
    }

    @Override public void flush() { flushes.incrementAndGet(); }

    @Override public void discard(long offset, long length) throws IOException { writeZeroes(offset, length, true); }

    /** With {@code mayUnmap} whole units become holes again; without it the range is written with zeroes (allocated). */
    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        if (mayUnmap) file.punchHole(offset, length);
        else file.zeroRange(offset, length);
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) {
        List<Extent> out = new ArrayList<>();
        long pos = offset, end = Math.min(size, offset + length);
        while (pos < end) {
            long u = pos / UNIT;
            long ue = Math.min((u + 1) * UNIT, end);
            boolean hole = !file.mapped(u);
            out.add(new Extent(pos, ue - pos, hole, hole));
            pos = ue;
        }
        return out;
    }

    boolean allocated(long unit) { return file.mapped(unit); }

    @Override public void close() { closed = true; }
}
