package io.qblk.uring;

import static io.qblk.uring.UringLayouts.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A cursor over one submission queue entry of a ring: fluent setters for the fields of
 * {@code struct io_uring_sqe} and the 16- or 80-byte command area of {@code IORING_OP_URING_CMD}.
 *
 * <p>One cursor object serves every slot of a ring (it is repositioned, not reallocated), so it is
 * owned by the ring's owner thread and valid only inside the call that handed it out
 * ({@link UringOp#prepare} or right after {@link IoUring#nextSqe()}).
 */
public final class Sqe {
    /** sqe->flags bits (IOSQE_*). */
    public static final int FIXED_FILE = 1, IO_DRAIN = 1 << 1, IO_LINK = 1 << 2, IO_HARDLINK = 1 << 3,
            ASYNC = 1 << 4, BUFFER_SELECT = 1 << 5, CQE_SKIP_SUCCESS = 1 << 6;
    /** fsync_flags: fdatasync semantics. */
    public static final int FSYNC_DATASYNC = 1;
    /** cancel_flags (kernel 5.19+). */
    public static final int CANCEL_ALL = 1, CANCEL_FD = 1 << 1, CANCEL_ANY = 1 << 2;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    private final MemorySegment sqes;
    private final int entrySize;
    private long base;

    Sqe(MemorySegment sqes, int entrySize) {
        this.sqes = sqes;
        this.entrySize = entrySize;
    }

    /** Positions the cursor on slot {@code index} of the SQE array. */
    Sqe at(int index) {
        base = (long) index * entrySize;
        return this;
    }

    /** Zeroes the whole entry (including the 80-byte command area of an SQE128 ring). */
    Sqe clear() {
        for (long o = 0; o < entrySize; o += 8) sqes.set(ValueLayout.JAVA_LONG, base + o, 0L);
        return this;
    }

    /** Size of the entry in bytes: 64, or 128 on an SQE128 ring. */
    public int entrySize() {
        return entrySize;
    }

    /** Size of the command area: 16, or 80 on an SQE128 ring. */
    public int cmdCapacity() {
        return entrySize - (int) SQE_CMD_OFFSET;
    }

    // ---- raw fields

    public Sqe opcode(int opcode) { SQE_OPCODE.set(sqes, base, (byte) opcode); return this; }
    public Sqe flags(int flags) { SQE_FLAGS.set(sqes, base, (byte) flags); return this; }
    public Sqe addFlags(int flags) { return flags(flags() | flags); }
    public Sqe ioprio(int ioprio) { SQE_IOPRIO.set(sqes, base, (short) ioprio); return this; }
    public Sqe fd(int fd) { SQE_FD.set(sqes, base, fd); return this; }
    public Sqe offset(long off) { SQE_OFF.set(sqes, base, off); return this; }
    public Sqe addr(long addr) { SQE_ADDR.set(sqes, base, addr); return this; }
    public Sqe addr(MemorySegment buf) { return addr(buf.address()); }
    public Sqe len(int len) { SQE_LEN.set(sqes, base, len); return this; }
    /** rw_flags / fsync_flags / cancel_flags / uring_cmd_flags: the per-opcode flag word. */
    public Sqe opFlags(int flags) { SQE_OP_FLAGS.set(sqes, base, flags); return this; }
    public Sqe userData(long userData) { SQE_USER_DATA.set(sqes, base, userData); return this; }
    public Sqe bufIndex(int index) { SQE_BUF_INDEX.set(sqes, base, (short) index); return this; }
    public Sqe personality(int p) { SQE_PERSONALITY.set(sqes, base, (short) p); return this; }
    public Sqe fileIndex(int index) { SQE_FILE_INDEX.set(sqes, base, index); return this; }
    public Sqe addr3(long addr3) { SQE_ADDR3.set(sqes, base, addr3); return this; }
    /** URING_CMD: the driver's command number (overlays the low half of sqe->off). */
    public Sqe cmdOp(int cmdOp) { SQE_CMD_OP.set(sqes, base, cmdOp); return this; }

    public int opcode() { return Byte.toUnsignedInt((byte) SQE_OPCODE.get(sqes, base)); }
    public int flags() { return Byte.toUnsignedInt((byte) SQE_FLAGS.get(sqes, base)); }
    public int fd() { return (int) SQE_FD.get(sqes, base); }
    public long offset() { return (long) SQE_OFF.get(sqes, base); }
    public long addr() { return (long) SQE_ADDR.get(sqes, base); }
    public int len() { return (int) SQE_LEN.get(sqes, base); }
    public int opFlags() { return (int) SQE_OP_FLAGS.get(sqes, base); }
    public long userData() { return (long) SQE_USER_DATA.get(sqes, base); }
    public int bufIndex() { return Short.toUnsignedInt((short) SQE_BUF_INDEX.get(sqes, base)); }
    public int cmdOp() { return (int) SQE_CMD_OP.get(sqes, base); }

    // ---- command area (URING_CMD payload)

    private long cmdAt(long offset, long size) {
        if (offset < 0 || offset + size > cmdCapacity()) {
            throw new IndexOutOfBoundsException("command bytes " + offset + "+" + size + " exceed " + cmdCapacity());
        }
        return base + SQE_CMD_OFFSET + offset;
    }

    /** Copies {@code payload} to the start of the command area (at most {@link #cmdCapacity()} bytes). */
    public Sqe cmd(MemorySegment payload) {
        return cmd(payload, payload.byteSize());
    }

    /** The first {@code length} bytes of {@code payload} as the command (no slice: nothing allocated per command). */
    public Sqe cmd(MemorySegment payload, long length) {
        MemorySegment.copy(payload, 0, sqes, cmdAt(0, length), length);
        return this;
    }

    public Sqe cmdByte(long offset, byte v) { sqes.set(ValueLayout.JAVA_BYTE, cmdAt(offset, 1), v); return this; }
    public Sqe cmdShort(long offset, short v) { sqes.set(U16, cmdAt(offset, 2), v); return this; }
    public Sqe cmdInt(long offset, int v) { sqes.set(U32, cmdAt(offset, 4), v); return this; }
    public Sqe cmdLong(long offset, long v) { sqes.set(U64, cmdAt(offset, 8), v); return this; }
    public byte cmdByte(long offset) { return sqes.get(ValueLayout.JAVA_BYTE, cmdAt(offset, 1)); }
    public long cmdLong(long offset) { return sqes.get(U64, cmdAt(offset, 8)); }

    /** A copy of the whole entry's bytes (for tests and diagnostics). */
    public byte[] toByteArray() {
        return sqes.asSlice(base, entrySize).toArray(ValueLayout.JAVA_BYTE);
    }

    // ---- preparations for the operations the project uses

    public Sqe prepNop() {
        return opcode(Opcode.NOP).fd(-1);
    }

    /** READ of {@code len} bytes at file offset {@code off} into the buffer at {@code addr}. */
    public Sqe prepRead(int fd, long addr, int len, long off) {
        return opcode(Opcode.READ).fd(fd).addr(addr).len(len).offset(off);
    }

    public Sqe prepWrite(int fd, long addr, int len, long off) {
        return opcode(Opcode.WRITE).fd(fd).addr(addr).len(len).offset(off);
    }

    /** READV: {@code iovecs} points at {@code count} struct iovec. */
    public Sqe prepReadv(int fd, long iovecs, int count, long off) {
        return opcode(Opcode.READV).fd(fd).addr(iovecs).len(count).offset(off);
    }

    public Sqe prepWritev(int fd, long iovecs, int count, long off) {
        return opcode(Opcode.WRITEV).fd(fd).addr(iovecs).len(count).offset(off);
    }

    /** READ_FIXED into registered buffer {@code bufIndex}; {@code addr} must lie inside that buffer. */
    public Sqe prepReadFixed(int fd, long addr, int len, long off, int bufIndex) {
        return opcode(Opcode.READ_FIXED).fd(fd).addr(addr).len(len).offset(off).bufIndex(bufIndex);
    }

    public Sqe prepWriteFixed(int fd, long addr, int len, long off, int bufIndex) {
        return opcode(Opcode.WRITE_FIXED).fd(fd).addr(addr).len(len).offset(off).bufIndex(bufIndex);
    }

    /** FSYNC of the whole file; {@code flags} = 0 (fsync) or {@link #FSYNC_DATASYNC} (fdatasync). */
    public Sqe prepFsync(int fd, int flags) {
        return opcode(Opcode.FSYNC).fd(fd).opFlags(flags);
    }

    /** FALLOCATE: the ABI puts the mode in len and the length in addr. */
    public Sqe prepFallocate(int fd, int mode, long off, long length) {
        return opcode(Opcode.FALLOCATE).fd(fd).len(mode).offset(off).addr(length);
    }

    /** URING_CMD {@code cmdOp} on {@code fd}; fill the payload with {@link #cmd} or the cmdXxx setters. */
    public Sqe prepUringCmd(int fd, int cmdOp) {
        return opcode(Opcode.URING_CMD).fd(fd).cmdOp(cmdOp);
    }

    /** POLL_ADD for {@code events} (POLLIN = 1) on {@code fd}. */
    public Sqe prepPollAdd(int fd, int events) {
        return opcode(Opcode.POLL_ADD).fd(fd).opFlags(events);
    }

    /** ASYNC_CANCEL of the request carrying {@code userData}. */
    public Sqe prepCancel(long userData, int cancelFlags) {
        return opcode(Opcode.ASYNC_CANCEL).fd(-1).addr(userData).opFlags(cancelFlags);
    }
}
