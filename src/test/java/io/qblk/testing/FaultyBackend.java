package io.qblk.testing;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.Set;

/**
 * Wraps a backend and fails chosen calls with an errno, two ways that combine:
 * <ul>
 * <li>{@link #fail(int, Set)}: every call of the given kinds fails while set ({@link #heal()} ends it);</li>
 * <li>{@link #failNth}: the Nth call counted among the given kinds fails, like qemu's blkdebug in
 *     iotests 026. EIO fails that call only; ENOSPC stays, as on a full file system: every later
 *     write, truncate and allocation fails too (datasync and hole punches still work).</li>
 * </ul>
 * Zero ranges are written as zeroes through {@link #write} (the interface's default), so a fault or
 * a recording above sees them as writes. Records whether it was closed.
 */
public final class FaultyBackend implements IoBackend {
    /** The calls a fault can hit. */
    public enum Op { READ, WRITE, DATASYNC, SIZE, TRUNCATE, ALLOCATE, PUNCH_HOLE }

    /** Every call that changes the file. */
    public static final Set<Op> MODIFYING = EnumSet.of(Op.WRITE, Op.TRUNCATE, Op.ALLOCATE, Op.PUNCH_HOLE);
    /** Calls that reserve space: truncate and allocate. */
    public static final Set<Op> ALLOCATION = EnumSet.of(Op.TRUNCATE, Op.ALLOCATE);
    private static final Set<Op> FULL = EnumSet.of(Op.WRITE, Op.TRUNCATE, Op.ALLOCATE);

    private final IoBackend inner;
    private int errno;
    private Set<Op> failing = Set.of();
    private Set<Op> counted = Set.of();
    private long failAt, count;
    private int nthErrno, injected;
    private boolean full;
    /** Checker self-test: the Nth write "succeeds" without writing anything (a lying disk). */
    public volatile boolean swallowWrites;
    public volatile boolean closed;

    public FaultyBackend(IoBackend inner) {
        this.inner = inner;
    }

    /** Every later call of a kind in {@code ops} fails with {@code errno}, until {@link #heal()}. */
    public synchronized FaultyBackend fail(int errno, Set<Op> ops) {
        this.errno = errno;
        this.failing = Set.copyOf(ops);
        return this;
    }

    public synchronized FaultyBackend heal() {
        failing = Set.of();
        full = false;
        return this;
    }

    /** From now on, count the calls of the kinds in {@code ops}; the {@code n}th (1-based; 0: none) fails with {@code errno}. */
    public synchronized FaultyBackend failNth(Set<Op> ops, long n, int errno) {
        this.counted = Set.copyOf(ops);
        this.failAt = n;
        this.nthErrno = errno;
        this.count = 0;
        return this;
    }

    /** The calls counted for {@link #failNth} so far. */
    public synchronized long count() {
        return count;
    }

    /** How many calls failed by injection. */
    public synchronized int injected() {
        return injected;
    }

    /** Throws the injected error for this call, if any; false when a swallowed write must do nothing. */
    private synchronized boolean check(Op op, String name) throws ErrnoException {
        if (failing.contains(op)) throw injected(name, errno);
        if (full && FULL.contains(op)) throw injected(name, Errno.ENOSPC);
        if (!counted.contains(op) || ++count != failAt) return true;
        if (swallowWrites && op == Op.WRITE) return false;
        if (nthErrno == Errno.ENOSPC) full = true;
        throw injected(name, nthErrno);
    }

    private ErrnoException injected(String name, int e) {
        injected++;
        return new ErrnoException(name + " (injected)", e);
    }

    @Override public void read(long offset, MemorySegment dst) throws IOException { check(Op.READ, "pread"); inner.read(offset, dst); }

    @Override public void write(long offset, MemorySegment src) throws IOException { if (check(Op.WRITE, "pwrite")) inner.write(offset, src); }

    @Override public void datasync() throws IOException { check(Op.DATASYNC, "fdatasync"); inner.datasync(); }

    @Override public long size() throws IOException { check(Op.SIZE, "fstat"); return inner.size(); }

    @Override public void truncate(long length) throws IOException { check(Op.TRUNCATE, "ftruncate"); inner.truncate(length); }

    @Override public void allocate(long offset, long length) throws IOException { check(Op.ALLOCATE, "fallocate"); inner.allocate(offset, length); }

    @Override public void punchHole(long offset, long length) throws IOException { check(Op.PUNCH_HOLE, "fallocate"); inner.punchHole(offset, length); }

    @Override public boolean readOnly() { return inner.readOnly(); }

    @Override
    public void close() throws IOException {
        closed = true;
        inner.close();
    }

    @Override public String toString() { return inner.toString(); }
}
