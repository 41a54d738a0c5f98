package io.qblk.target;

import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * An {@link IoBackend} wrapper whose calls fail with a chosen errno while it is set (0: pass
 * through): writes, allocations and hole punches ({@link #writeErrno}), size ({@link #sizeErrno}).
 * Records whether it was closed.
 */
public final class FaultyBackend implements IoBackend {
    private final IoBackend inner;
    public volatile int writeErrno;
    public volatile int sizeErrno;
    public volatile boolean closed;

    public FaultyBackend(IoBackend inner) {
        this.inner = inner;
    }

    private void check(int errno, String op) throws ErrnoException {
        if (errno != 0) throw new ErrnoException(op + " (injected)", errno);
    }

    @Override public void read(long offset, MemorySegment dst) throws IOException { inner.read(offset, dst); }
    @Override public void write(long offset, MemorySegment src) throws IOException { check(writeErrno, "pwrite"); inner.write(offset, src); }
    @Override public void datasync() throws IOException { inner.datasync(); }
    @Override public long size() throws IOException { check(sizeErrno, "fstat"); return inner.size(); }
    @Override public void truncate(long length) throws IOException { check(writeErrno, "ftruncate"); inner.truncate(length); }
    @Override public void allocate(long offset, long length) throws IOException { check(writeErrno, "fallocate"); inner.allocate(offset, length); }
    @Override public void punchHole(long offset, long length) throws IOException { check(writeErrno, "fallocate"); inner.punchHole(offset, length); }
    @Override public void zeroRange(long offset, long length) throws IOException { check(writeErrno, "fallocate"); inner.zeroRange(offset, length); }
    @Override public boolean readOnly() { return inner.readOnly(); }

    @Override
    public void close() throws IOException {
        closed = true;
        inner.close();
    }
}
