package io.qblk.uring;

import io.qblk.io.ErrnoException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.LockSupport;

/**
 * A reusable single-SQE operation whose submitter waits for the result: the thread that calls
 * {@link RingThread#execute} parks until the owner thread delivers the completion and unparks it.
 *
 * <p>Describe the operation with one of the {@code prepXxx} setters, execute it, read {@link #result()};
 * then the same object may describe the next operation (no allocation per I/O). A request is used by
 * one submitter at a time. The URING_CMD payload buffer (80 bytes, native) is allocated on first use.
 */
public class UringRequest extends UringOp {
    private int opcode;
    private int fd;
    private long off;
    private long addr;
    private int len;
    private int opFlags;
    private int sqeFlags;
    private int bufIndex;
    private int cmdOp;
    private MemorySegment cmd;
    private int cmdLength;

    private int res;
    private int cqeFlags;
    private long big0, big1;
    private IOException failure;
    private volatile boolean done;
    private volatile Thread waiter;

    /** Clears the description (all fields zero, fd -1). */
    public UringRequest reset() {
        opcode = 0; fd = -1; off = 0; addr = 0; len = 0; opFlags = 0; sqeFlags = 0; bufIndex = 0; cmdOp = 0;
        cmdLength = 0;
        return this;
    }

    public UringRequest prepNop() {
        reset();
        opcode = Opcode.NOP;
        return this;
    }

    public UringRequest prepRead(int fd, MemorySegment buf, long offset) {
        return rw(Opcode.READ, fd, buf.address(), checkedLength(buf), offset);
    }

    public UringRequest prepWrite(int fd, MemorySegment buf, long offset) {
        return rw(Opcode.WRITE, fd, buf.address(), checkedLength(buf), offset);
    }

    /** READV: {@code iovecs} holds {@code count} struct iovec (see {@link UringLayouts#IOVEC}). */
    public UringRequest prepReadv(int fd, MemorySegment iovecs, int count, long offset) {
        return rw(Opcode.READV, fd, iovecs.address(), count, offset);
    }

    public UringRequest prepWritev(int fd, MemorySegment iovecs, int count, long offset) {
        return rw(Opcode.WRITEV, fd, iovecs.address(), count, offset);
    }

    /** READ_FIXED into (a slice of) registered buffer {@code bufIndex}. */
    public UringRequest prepReadFixed(int fd, MemorySegment buf, long offset, int bufIndex) {
        rw(Opcode.READ_FIXED, fd, buf.address(), checkedLength(buf), offset);
        this.bufIndex = bufIndex;
        return this;
    }

    public UringRequest prepWriteFixed(int fd, MemorySegment buf, long offset, int bufIndex) {
        rw(Opcode.WRITE_FIXED, fd, buf.address(), checkedLength(buf), offset);
        this.bufIndex = bufIndex;
        return this;
    }

    /** fsync ({@code dataOnly} = false) or fdatasync ({@code dataOnly} = true) of the whole file. */
    public UringRequest prepFsync(int fd, boolean dataOnly) {
        reset();
        opcode = Opcode.FSYNC;
        this.fd = fd;
        opFlags = dataOnly ? Sqe.FSYNC_DATASYNC : 0;
        return this;
    }

    /** recv(fd, buf, len, msgFlags) on a socket: completes when data (or end of stream) arrives. */
    public UringRequest prepRecv(int fd, MemorySegment buf, int msgFlags) {
        reset();
        opcode = Opcode.RECV;
        this.fd = fd;
        this.addr = buf.address();
        this.len = checkedLength(buf);
        opFlags = msgFlags;
        return this;
    }

    /** fallocate(fd, mode, offset, length). */
    public UringRequest prepFallocate(int fd, int mode, long offset, long length) {
        reset();
        opcode = Opcode.FALLOCATE;
        this.fd = fd;
        this.len = mode;
        this.off = offset;
        this.addr = length;
        return this;
    }

    /**
     * URING_CMD {@code cmdOp} on {@code fd} with {@code payload} copied into the SQE's command area
     * (up to 16 bytes, or 80 on an SQE128 ring). The payload is copied now, so the caller may reuse it.
     */
    public UringRequest prepUringCmd(int fd, int cmdOp, MemorySegment payload) {
        reset();
        opcode = Opcode.URING_CMD;
        this.fd = fd;
        this.cmdOp = cmdOp;
        if (payload.byteSize() > UringLayouts.CMD_BYTES_SQE128) {
            throw new IllegalArgumentException("URING_CMD payload of " + payload.byteSize() + " bytes exceeds 80");
        }
        if (cmd == null) cmd = Arena.ofAuto().allocate(UringLayouts.CMD_BYTES_SQE128, 8);
        MemorySegment.copy(payload, 0, cmd, 0, payload.byteSize());
        cmdLength = (int) payload.byteSize();
        return this;
    }

    /** Extra IOSQE_* flags for the SQE (e.g. {@link Sqe#IO_LINK}, set by linked execution). */
    public UringRequest sqeFlags(int flags) {
        this.sqeFlags = flags;
        return this;
    }

    private UringRequest rw(int op, int fd, long addr, int len, long offset) {
        reset();
        this.opcode = op;
        this.fd = fd;
        this.addr = addr;
        this.len = len;
        this.off = offset;
        return this;
    }

    private static int checkedLength(MemorySegment buf) {
        if (!buf.isNative()) throw new IllegalArgumentException("io_uring I/O needs a native buffer");
        if (buf.byteSize() > Integer.MAX_VALUE) throw new IllegalArgumentException("buffer larger than 2 GiB");
        return (int) buf.byteSize();
    }

    public int opcode() {
        return opcode;
    }

    // ---- owner-thread side

    /** Fills {@code sqe} from this description (also used by {@link LinkedRequests}). */
    void fill(Sqe sqe) {
        sqe.opcode(opcode).fd(fd).offset(off).addr(addr).len(len).opFlags(opFlags).flags(sqeFlags).bufIndex(bufIndex);
        if (opcode == Opcode.URING_CMD) {
            sqe.cmdOp(cmdOp);
            if (cmdLength > 0) {
                if (cmdLength > sqe.cmdCapacity()) {
                    throw new IllegalArgumentException("URING_CMD payload of " + cmdLength
                            + " bytes needs an SQE128 ring (this ring carries " + sqe.cmdCapacity() + ")");
                }
                sqe.cmd(cmd, cmdLength);
            }
        }
    }

    @Override
    protected void prepare(Sqe sqe, int index) {
        fill(sqe);
    }

    @Override
    protected void complete(int index, int res, int flags, long big0, long big1) {
        this.res = res;
        this.cqeFlags = flags;
        this.big0 = big0;
        this.big1 = big1;
        signal();
    }

    @Override
    protected void fail(IOException cause) {
        this.failure = cause;
        signal();
    }

    private void signal() {
        done = true;
        Thread w = waiter;
        if (w != null) LockSupport.unpark(w);
    }

    // ---- submitter side

    /** Called by the ring thread before queueing: arms the request for the current thread. */
    void arm() {
        failure = null;
        res = 0;
        cqeFlags = 0;
        big0 = big1 = 0;
        done = false;
        waiter = Thread.currentThread();
    }

    /** Arms the request with no thread to wake: its completion only records the result (a chain's head, see {@link LinkedRequests#chain}). */
    void armDetached() {
        arm();
        waiter = null;
    }

    boolean isDone() {
        return done;
    }

    /** Parks until the completion arrives (interrupts are remembered, not obeyed: the kernel owns the buffer). */
    void await() {
        boolean interrupted = false;
        while (!done) {
            LockSupport.park(this);
            if (Thread.interrupted()) interrupted = true;
        }
        waiter = null;
        if (interrupted) Thread.currentThread().interrupt();
    }

    /** The failure that prevented the operation from completing, or null. */
    public IOException failure() {
        return failure;
    }

    /** The kernel's result: bytes transferred, 0, or a negative errno. */
    public int result() {
        return res;
    }

    public int cqeFlags() {
        return cqeFlags;
    }

    /** big_cqe[0] of a CQE32 ring. */
    public long bigCqe0() {
        return big0;
    }

    /** big_cqe[1] of a CQE32 ring. */
    public long bigCqe1() {
        return big1;
    }

    /** {@link #result()}, or an {@link ErrnoException} named after the operation when it is negative. */
    public int checkedResult(String what) throws ErrnoException {
        if (res < 0) throw new ErrnoException(what, -res);
        return res;
    }

    @Override
    public String toString() {
        return Opcode.name(opcode) + " fd " + fd;
    }
}
