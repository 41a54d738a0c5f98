package io.qblk.faults;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.HashMap;
import java.util.Map;

/**
 * A crash state: an immutable durable image shared by many states plus the 4 KiB pages this state
 * changes. Materialising a state costs only the bytes of its in-flight writes.
 */
final class OverlayBackend implements IoBackend {
    private static final int PAGE = 4096;
    private final byte[] base;
    private final long baseSize;
    private final Map<Long, byte[]> pages = new HashMap<>();
    private long size;
    private final String name;

    OverlayBackend(byte[] base, long baseSize, String name) {
        this.base = base;
        this.baseSize = baseSize;
        this.size = baseSize;
        this.name = name;
    }

    private byte[] page(long p, boolean create) {
        byte[] pg = pages.get(p);
        if (pg != null || !create) return pg;
        pg = new byte[PAGE];
        long off = p * PAGE;
        long n = Math.max(0, Math.min(PAGE, Math.min(baseSize, size) - off));
        if (n > 0) System.arraycopy(base, (int) off, pg, 0, (int) n);
        pages.put(p, pg);
        return pg;
    }

    /** Writes {@code len} bytes of {@code src} from {@code srcOff} at file offset {@code offset}. */
    void put(long offset, byte[] src, int srcOff, int len) {
        long pos = offset;
        int done = 0;
        while (done < len) {
            long p = pos / PAGE;
            int in = (int) (pos % PAGE);
            int n = Math.min(PAGE - in, len - done);
            System.arraycopy(src, srcOff + done, page(p, true), in, n);
            done += n;
            pos += n;
        }
        size = Math.max(size, offset + len);
    }

    @Override
    public synchronized void read(long offset, MemorySegment dst) {
        long n = dst.byteSize();
        long done = 0;
        while (done < n) {
            long pos = offset + done;
            long p = pos / PAGE;
            int in = (int) (pos % PAGE);
            int m = (int) Math.min(PAGE - in, n - done);
            if (pos >= size) {
                dst.asSlice(done).fill((byte) 0);
                return;
            }
            int valid = (int) Math.min(m, size - pos);
            byte[] pg = pages.get(p);
            if (pg != null) MemorySegment.copy(pg, in, dst, ValueLayout.JAVA_BYTE, done, valid);
            else {
                int fromBase = (int) Math.max(0, Math.min(valid, baseSize - pos));
                if (fromBase > 0) MemorySegment.copy(base, (int) pos, dst, ValueLayout.JAVA_BYTE, done, fromBase);
                if (fromBase < valid) dst.asSlice(done + fromBase, valid - fromBase).fill((byte) 0);
            }
            if (valid < m) dst.asSlice(done + valid, m - valid).fill((byte) 0);
            done += m;
        }
    }

    @Override
    public synchronized void write(long offset, MemorySegment src) {
        byte[] b = src.toArray(ValueLayout.JAVA_BYTE);
        put(offset, b, 0, b.length);
    }

    @Override public void datasync() {}

    @Override public synchronized long size() { return size; }

    @Override
    public synchronized void truncate(long length) {
        if (length < size) {
            // zero the cut-off tail so a later growth reads zeroes
            for (long pos = length; pos < size; ) {
                long p = pos / PAGE;
                int in = (int) (pos % PAGE);
                int n = (int) Math.min(PAGE - in, size - pos);
                java.util.Arrays.fill(page(p, true), in, in + n, (byte) 0);
                pos += n;
            }
        }
        size = length;
    }

    @Override
    public synchronized void allocate(long offset, long length) {
        if (offset + length > size) size = offset + length;
    }

    @Override
    public synchronized void punchHole(long offset, long length) {
        long end = Math.min(size, offset + length);
        byte[] zero = new byte[PAGE];
        for (long pos = offset; pos < end; ) {
            int n = (int) Math.min(PAGE - pos % PAGE, end - pos);
            put(pos, zero, 0, n);
            pos += n;
        }
    }

    /** Writes the whole state to a stream (for qemu-img check). */
    synchronized void writeTo(OutputStream out) throws IOException {
        byte[] buf = new byte[PAGE];
        for (long pos = 0; pos < size; pos += PAGE) {
            int n = (int) Math.min(PAGE, size - pos);
            read(pos, MemorySegment.ofArray(buf).asSlice(0, n));
            out.write(buf, 0, n);
        }
    }

    @Override public boolean readOnly() { return false; }

    @Override public void close() {}

    @Override public String toString() { return name; }
}
