package io.qblk.nbd;

import io.qblk.target.BlockTarget;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A sparse in-memory target with 64 KiB allocation units: unwritten units are holes that read as
 * zeroes, so block status has real structure to report. Counts flushes for the tests.
 */
final class MemoryTarget implements BlockTarget {
    static final int UNIT = 64 << 10;
    private final long size;
    private final boolean readOnly;
    private final ConcurrentHashMap<Long, byte[]> units = new ConcurrentHashMap<>();
    final AtomicInteger flushes = new AtomicInteger();
    volatile boolean closed;

    MemoryTarget(long size, boolean readOnly) {
        this.size = size;
        this.readOnly = readOnly;
    }

    @Override public long size() { return size; }
    @Override public boolean readOnly() { return readOnly; }

    @Override
    public void read(long offset, MemorySegment dst) {
        long done = 0, len = dst.byteSize();
        while (done < len) {
            long pos = offset + done, u = pos / UNIT;
            int in = (int) (pos % UNIT);
            int n = (int) Math.min(UNIT - in, len - done);
            byte[] b = units.get(u);
            if (b == null) dst.asSlice(done, n).fill((byte) 0);
            else synchronized (b) { MemorySegment.copy(MemorySegment.ofArray(b), in, dst, done, n); }
            done += n;
        }
    }

    @Override
    public void write(long offset, MemorySegment src, boolean fua) {
        long done = 0, len = src.byteSize();
        while (done < len) {
            long pos = offset + done, u = pos / UNIT;
            int in = (int) (pos % UNIT);
            int n = (int) Math.min(UNIT - in, len - done);
            byte[] b = units.computeIfAbsent(u, k -> new byte[UNIT]);
            synchronized (b) { MemorySegment.copy(src, done, MemorySegment.ofArray(b), in, n); }
            done += n;
        }
        if (fua) flushes.incrementAndGet();
    }

    @Override public void flush() { flushes.incrementAndGet(); }

    @Override
    public void discard(long offset, long length) { writeZeroes(offset, length, true); }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) {
        long done = 0;
        while (done < length) {
            long pos = offset + done, u = pos / UNIT;
            int in = (int) (pos % UNIT);
            int n = (int) Math.min(UNIT - in, length - done);
            if (n == UNIT && mayUnmap) units.remove(u);
            else {
                byte[] b = mayUnmap ? units.get(u) : units.computeIfAbsent(u, k -> new byte[UNIT]);
                if (b != null) synchronized (b) { java.util.Arrays.fill(b, in, in + n, (byte) 0); }
            }
            done += n;
        }
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) {
        List<Extent> out = new ArrayList<>();
        long pos = offset, end = Math.min(size, offset + length);
        while (pos < end) {
            long u = pos / UNIT;
            long ue = Math.min((u + 1) * UNIT, end);
            boolean hole = !units.containsKey(u);
            out.add(new Extent(pos, ue - pos, hole, hole));
            pos = ue;
        }
        return out;
    }

    boolean allocated(long unit) { return units.containsKey(unit); }

    @Override public void close() { closed = true; }
}
