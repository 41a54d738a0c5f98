package io.qblk.testing;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * A file in memory: fixed-size pages over an optional immutable base image that many instances may
 * share (copy-on-write, so a crash state costs only the pages it changes). Pages never written and
 * outside the base are holes: they read as zeroes and {@link #mapped} says so. Files past 1 GiB are
 * refused like a file system without space (EFBIG). Thread-safe.
 */
public final class MemoryBackend implements IoBackend {
    /** The largest file: 1 GiB. */
    public static final long LIMIT = 1L << 30;
    private final byte[] base;
    private final int page;
    private final Map<Long, byte[]> pages = new HashMap<>();
    private final String name;
    private long size;

    /** An empty file with 4 KiB pages. */
    public MemoryBackend() {
        this(new byte[0], 4096, "memory-image");
    }

    /** A file that starts as {@code base} (shared, never modified). */
    public MemoryBackend(byte[] base) {
        this(base, 4096, "memory-image");
    }

    /** {@code base} shared and never modified; {@code pageSize} bytes per copy-on-write page. */
    public MemoryBackend(byte[] base, int pageSize, String name) {
        this.base = base;
        this.page = pageSize;
        this.name = name;
        this.size = base.length;
    }

    public int pageSize() {
        return page;
    }

    /** A copy of the current contents, exactly {@link #size()} bytes long. */
    public synchronized byte[] snapshot() {
        byte[] out = new byte[(int) size];
        try {
            read(0, MemorySegment.ofArray(out));
        } catch (ErrnoException e) {
            throw new AssertionError(e); // offset 0 is valid
        }
        return out;
    }

    /** True when page {@code p} holds data (written, or inside the base), false for a hole. */
    public synchronized boolean mapped(long p) {
        return pages.containsKey(p) || p * page < Math.min(base.length, size);
    }

    private byte[] page(long p) {
        byte[] pg = pages.get(p);
        if (pg != null) return pg;
        pg = new byte[page];
        long off = p * page;
        long n = Math.max(0, Math.min(page, Math.min(base.length, size) - off));
        if (n > 0) System.arraycopy(base, (int) off, pg, 0, (int) n);
        pages.put(p, pg);
        return pg;
    }

    private static void limit(String op, long end) throws ErrnoException {
        if (end > LIMIT || end < 0) throw new ErrnoException(op + " at " + end, Errno.EFBIG);
    }

    /** Writes {@code len} bytes of {@code src} from {@code srcOff} at file offset {@code offset}. */
    public synchronized void put(long offset, byte[] src, int srcOff, int len) throws ErrnoException {
        if (offset < 0) throw new ErrnoException("pwrite at " + offset, Errno.EINVAL);
        limit("pwrite", offset + len);
        for (int done = 0; done < len; ) {
            long pos = offset + done;
            int in = (int) (pos % page);
            int n = Math.min(page - in, len - done);
            System.arraycopy(src, srcOff + done, page(pos / page), in, n);
            done += n;
        }
        size = Math.max(size, offset + len);
    }

    @Override
    public synchronized void read(long offset, MemorySegment dst) throws ErrnoException {
        if (offset < 0) throw new ErrnoException("pread at " + offset, Errno.EINVAL);
        long n = dst.byteSize();
        for (long done = 0; done < n; ) {
            long pos = offset + done;
            int in = (int) (pos % page);
            int m = (int) Math.min(page - in, n - done);
            int valid = (int) Math.max(0, Math.min(m, size - pos));
            byte[] pg = pages.get(pos / page);
            int from = 0;
            if (pg != null) from = valid;
            else if (pos < base.length) from = (int) Math.min(valid, base.length - pos);
            if (from > 0) MemorySegment.copy(pg != null ? pg : base, pg != null ? in : (int) pos, dst, ValueLayout.JAVA_BYTE, done, from);
            if (from < m) dst.asSlice(done + from, m - from).fill((byte) 0);
            done += m;
        }
    }

    @Override
    public synchronized void write(long offset, MemorySegment src) throws ErrnoException {
        byte[] b = src.toArray(ValueLayout.JAVA_BYTE);
        put(offset, b, 0, b.length);
    }

    @Override public void datasync() {}

    @Override public synchronized long size() { return size; }

    @Override
    public synchronized void truncate(long length) throws ErrnoException {
        limit("ftruncate", length);
        if (length < size) zero(length, size); // a later growth reads zeroes
        size = length;
    }

    @Override
    public synchronized void allocate(long offset, long length) throws ErrnoException {
        if (offset + length > size) truncate(offset + length);
    }

    @Override
    public synchronized void punchHole(long offset, long length) {
        zero(offset, Math.min(size, offset + length));
    }

    /** Zeroes [from, to): whole pages outside the base become holes again. */
    private void zero(long from, long to) {
        for (long pos = from; pos < to; ) {
            long p = pos / page;
            int in = (int) (pos % page);
            int n = (int) Math.min(page - in, to - pos);
            if (n == page && p * page >= base.length) pages.remove(p);
            else if (pages.containsKey(p) || pos < base.length) Arrays.fill(page(p), in, in + n, (byte) 0);
            pos += n;
        }
    }

    /** Writes the whole file to a stream (for qemu-img check). */
    public synchronized void writeTo(OutputStream out) throws IOException {
        byte[] buf = new byte[page];
        for (long pos = 0; pos < size; pos += page) {
            int n = (int) Math.min(page, size - pos);
            read(pos, MemorySegment.ofArray(buf).asSlice(0, n));
            out.write(buf, 0, n);
        }
    }

    @Override public boolean readOnly() { return false; }

    @Override public void close() {}

    @Override public String toString() { return name; }
}
