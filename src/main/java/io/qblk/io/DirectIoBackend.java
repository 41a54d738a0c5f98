package io.qblk.io;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.LongAdder;

/**
 * {@link IoBackend} for cache mode {@link CacheMode#NONE}: two descriptors on one file, one opened with
 * O_DIRECT and one buffered. A read or write whose buffer address, file offset and length are all
 * multiples of {@link #ALIGNMENT} goes to the direct descriptor and bypasses the page cache; every
 * other request (header fields, a short L1 table, a guest request of 512 bytes) goes to the buffered
 * one. fdatasync, size, truncate, fallocate and zeroing use the buffered descriptor (they act on the
 * inode, whichever descriptor names it).
 *
 * <p>Why mixing is coherent (Linux, iomap and the classic direct-I/O path alike): before a direct
 * read or write the kernel writes back and waits for dirty page-cache pages in the range, and after
 * a direct write it drops the cached pages of the range, so a later buffered read fetches the new
 * data. What the kernel does not order are <em>concurrent</em> overlapping buffered and direct
 * requests to one page; the engine never issues those (see docs/qcow2-engine.md, "Cache modes").
 *
 * <p>If a direct request fails with EINVAL (an unaligned tail at end of file, a device whose logical
 * block is larger than 4 KiB), it is retried buffered; after {@link #EINVAL_LIMIT} such failures the
 * direct descriptor is no longer used and {@link #directDisabledReason()} says why.
 */
public final class DirectIoBackend implements IoBackend {
    /** Alignment of buffer address, offset and length for the direct path; safe for 512 and 4096 byte sectors. */
    public static final int ALIGNMENT = 4096;
    static final int EINVAL_LIMIT = 16;

    private final IoBackend buffered;
    private final IoBackend direct;
    private final AutoCloseable owner;
    private volatile String disabledReason;
    private int einvals;
    private boolean closed;
    private final LongAdder directOps = new LongAdder();
    private final LongAdder bufferedOps = new LongAdder();

    /**
     * @param buffered a buffered descriptor of the file
     * @param direct   an O_DIRECT descriptor of the same file, or null: every request buffered
     * @param reason   why {@code direct} is null when O_DIRECT was wanted but is unavailable (shown to
     *                 the user); null when the caller asked for buffered I/O (a ring-owning wrapper)
     * @param owner    closed after both descriptors (e.g. their ring thread), or null
     */
    public DirectIoBackend(IoBackend buffered, IoBackend direct, String reason, AutoCloseable owner) {
        this.buffered = buffered;
        this.direct = direct;
        this.owner = owner;
        this.disabledReason = direct == null ? reason : null;
    }

    /** Null while the direct path is in use; otherwise why every request is buffered. */
    public String directDisabledReason() {
        return disabledReason;
    }

    /** Stops using the direct descriptor (e.g. the image's cluster size is below {@link #ALIGNMENT}). */
    public void disableDirect(String reason) {
        if (direct != null && disabledReason == null) disabledReason = reason;
    }

    /** Requests served by the direct descriptor so far. */
    public long directOps() {
        return directOps.sum();
    }

    /** Reads and writes served by the buffered descriptor so far. */
    public long bufferedOps() {
        return bufferedOps.sum();
    }

    private boolean aligned(long offset, MemorySegment seg) {
        if (direct == null || disabledReason != null || !seg.isNative()) return false;
        long mask = ALIGNMENT - 1;
        return ((offset | seg.address() | seg.byteSize()) & mask) == 0 && seg.byteSize() > 0;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        if (aligned(offset, dst)) {
            try {
                direct.read(offset, dst);
                directOps.increment();
                return;
            } catch (ErrnoException e) {
                if (e.errno() != Errno.EINVAL) throw e;
                sawEinval(e);
            }
        }
        bufferedOps.increment();
        buffered.read(offset, dst);
    }

    /**
     * The direct descriptor for aligned I/O, the buffered one otherwise (as {@link #read} and
     * {@link #write} pick). A direct read or write that fails with EINVAL makes its caller take
     * {@link #read} or {@link #write}, which retry buffered.
     */
    @Override
    public int plainFd(long offset, MemorySegment dst) {
        if (aligned(offset, dst)) {
            int fd = direct.plainFd(offset, dst);
            if (fd >= 0) directOps.increment();
            return fd;
        }
        int fd = buffered.plainFd(offset, dst);
        if (fd >= 0) bufferedOps.increment();
        return fd;
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        if (aligned(offset, src)) {
            try {
                direct.write(offset, src);
                directOps.increment();
                return;
            } catch (ErrnoException e) {
                if (e.errno() != Errno.EINVAL) throw e;
                sawEinval(e); // a positional write is idempotent: redo it whole on the buffered descriptor
            }
        }
        bufferedOps.increment();
        buffered.write(offset, src);
    }

    /**
     * The aligned writes as one batch on the direct descriptor, the others one by one on the buffered
     * one. If the direct batch fails with EINVAL it is redone whole, buffered (positional writes are
     * idempotent), as {@link #write} does for one request.
     */
    @Override
    public void writeAll(java.util.List<Write> writes) throws IOException {
        java.util.List<Write> direct = new java.util.ArrayList<>(writes.size());
        for (Write w : writes) {
            if (aligned(w.offset(), w.src())) direct.add(w);
            else write(w.offset(), w.src());
        }
        if (direct.isEmpty()) return;
        try {
            this.direct.writeAll(direct);
            directOps.add(direct.size());
            return;
        } catch (ErrnoException e) {
            if (e.errno() != Errno.EINVAL) throw e;
            sawEinval(e);
        }
        bufferedOps.add(direct.size());
        buffered.writeAll(direct);
    }

    private synchronized void sawEinval(ErrnoException e) {
        if (++einvals >= EINVAL_LIMIT) disableDirect("O_DIRECT requests failed with EINVAL " + einvals + " times (last: " + e.getMessage() + ")");
    }

    @Override
    public void datasync() throws IOException {
        buffered.datasync();
    }

    @Override
    public long nextData(long offset) throws IOException { return buffered.nextData(offset); }

    @Override
    public long nextHole(long offset) throws IOException { return buffered.nextHole(offset); }

    @Override
    public long size() throws IOException {
        return buffered.size();
    }

    @Override
    public void truncate(long length) throws IOException {
        buffered.truncate(length);
    }

    @Override
    public void allocate(long offset, long length) throws IOException {
        buffered.allocate(offset, length);
    }

    @Override
    public void punchHole(long offset, long length) throws IOException {
        buffered.punchHole(offset, length);
    }

    @Override
    public void zeroRange(long offset, long length) throws IOException {
        buffered.zeroRange(offset, length);
    }

    @Override
    public boolean readOnly() {
        return buffered.readOnly();
    }

    @Override
    public synchronized void close() throws IOException {
        if (closed) return;
        closed = true;
        IOException first = null;
        for (AutoCloseable c : new AutoCloseable[] {direct, buffered, owner}) {
            if (c == null) continue;
            try {
                c.close();
            } catch (IOException e) {
                if (first == null) first = e;
            } catch (Exception e) {
                if (first == null) first = new IOException(e);
            }
        }
        if (first != null) throw first;
    }

    @Override
    public String toString() {
        return buffered.toString();
    }
}
