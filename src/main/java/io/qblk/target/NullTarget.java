package io.qblk.target;

import java.lang.foreign.MemorySegment;
import java.util.List;

/** A device that stores nothing: reads return zeroes, writes are dropped (for measuring frontends). */
public final class NullTarget implements BlockTarget {
    private final long size;

    public NullTarget(long size) {
        if (size <= 0 || size % 512 != 0) throw new IllegalArgumentException("null target size must be a positive multiple of 512: " + size);
        this.size = size;
    }

    @Override public long size() { return size; }
    @Override public boolean readOnly() { return false; }
    @Override public void read(long offset, MemorySegment dst) { dst.fill((byte) 0); }
    @Override public void write(long offset, MemorySegment src, boolean fua) {}
    @Override public void flush() {}
    @Override public void discard(long offset, long length) {}
    @Override public void writeZeroes(long offset, long length, boolean mayUnmap) {}

    @Override
    public List<Extent> blockStatus(long offset, long length) {
        return List.of(new Extent(offset, length, true, true));
    }

    @Override public void close() {}
}
