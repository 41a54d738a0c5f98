package io.qblk.faults;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * Fails the Nth call of one kind (write, datasync, or allocation = allocate/truncate) with an
 * errno, like qemu's blkdebug in iotests 026. EIO fails that call only; ENOSPC stays: every later
 * write and allocation fails too (datasync still works, as on a full file system).
 */
final class FailingBackend implements IoBackend {
    enum Target { WRITE, DATASYNC, ALLOCATION }

    private final IoBackend inner;
    private final Target target;
    private final long failAt;
    private final int errno;
    private long count;
    private boolean full;
    private int injected;
    /** Checker self-test: the failing write "succeeds" without writing anything (a lying disk). */
    boolean swallowWrites;

    /** {@code failAt} is 1-based; 0 never fails (counting run). */
    FailingBackend(IoBackend inner, Target target, long failAt, int errno) {
        this.inner = inner;
        this.target = target;
        this.failAt = failAt;
        this.errno = errno;
    }

    long count() {
        return count;
    }

    int injected() {
        return injected;
    }

    private void maybeFail(Target t, String op) throws ErrnoException {
        if (full && t != Target.DATASYNC) {
            injected++;
            throw new ErrnoException(op, Errno.ENOSPC);
        }
        if (t != target) return;
        if (++count == failAt) {
            injected++;
            if (errno == Errno.ENOSPC) full = true;
            throw new ErrnoException(op, errno);
        }
    }

    @Override public void read(long offset, MemorySegment dst) throws IOException { inner.read(offset, dst); }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        if (swallowWrites && target == Target.WRITE && count + 1 == failAt) {
            count++;
            return;
        }
        maybeFail(Target.WRITE, "pwrite");
        inner.write(offset, src);
    }

    @Override
    public void datasync() throws IOException {
        maybeFail(Target.DATASYNC, "fdatasync");
        inner.datasync();
    }

    @Override public long size() throws IOException { return inner.size(); }

    @Override
    public void truncate(long length) throws IOException {
        maybeFail(Target.ALLOCATION, "ftruncate");
        inner.truncate(length);
    }

    @Override
    public void allocate(long offset, long length) throws IOException {
        maybeFail(Target.ALLOCATION, "fallocate");
        inner.allocate(offset, length);
    }

    @Override public void punchHole(long offset, long length) throws IOException { inner.punchHole(offset, length); }

    @Override public boolean readOnly() { return inner.readOnly(); }

    @Override public void close() throws IOException { inner.close(); }

    @Override public String toString() { return inner.toString(); }
}
