package io.qblk.ublk;

import io.qblk.io.ErrnoException;
import io.qblk.io.LibC;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A small io_uring with 128-byte SQEs (what URING_CMD to ublk needs), used by exactly one thread:
 * whoever fills SQEs also calls {@link #submitAndWait} and {@link #reap}. The ublk queue's owner
 * thread and each control command use one.
 *
 * <p>Ring layout and offsets follow the io_uring_setup(2) ABI (io_uring_params with its
 * sq_off/cq_off tables; SQ ring, CQ ring and SQE array mapped from the ring fd).
 */
final class CommandRing implements AutoCloseable {
    static final byte OP_NOP = 0, OP_READ = 22, OP_URING_CMD = 46;
    static final int SQE_BYTES = 128, CQE_BYTES = 16;
    /** Offset of the command payload inside a 128-byte SQE (80 bytes available). */
    static final long SQE_CMD = 48;

    private static final int SETUP_CQSIZE = 1 << 3, SETUP_SQE128 = 1 << 10;
    private static final int FEAT_SINGLE_MMAP = 1;
    private static final long OFF_SQ_RING = 0, OFF_CQ_RING = 0x8000000L, OFF_SQES = 0x10000000L;
    private static final int ENTER_GETEVENTS = 1;
    private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

    private final int fd;
    private final MemorySegment sqRing, cqRing, sqes;
    private final long sqHeadOff, sqTailOff, cqHeadOff, cqTailOff, cqesOff;
    private final int sqMask, sqEntries, cqMask;
    private int sqTail;      // local copy; published with release before io_uring_enter
    private int unsubmitted; // SQEs filled since the last enter
    private boolean closed;

    /** What {@link #reap} hands each completion to. */
    interface Completion {
        void complete(long userData, int result);
    }

    CommandRing(int entries, int cqEntries) throws ErrnoException {
        MemorySegment p = Arena.ofAuto().allocate(120, 8);
        p.set(ValueLayout.JAVA_INT, 8, SETUP_SQE128 | SETUP_CQSIZE);
        p.set(ValueLayout.JAVA_INT, 4, cqEntries);
        fd = UblkSyscalls.ioUringSetup(entries, p);
        try {
            sqEntries = p.get(ValueLayout.JAVA_INT, 0);
            int cqN = p.get(ValueLayout.JAVA_INT, 4);
            int features = p.get(ValueLayout.JAVA_INT, 20);
            // io_sqring_offsets at 40: head, tail, ring_mask, ring_entries, flags, dropped, array
            sqHeadOff = u32(p, 40);
            sqTailOff = u32(p, 44);
            long sqMaskOff = u32(p, 48);
            long sqArrayOff = u32(p, 64);
            // io_cqring_offsets at 80: head, tail, ring_mask, ring_entries, overflow, cqes
            cqHeadOff = u32(p, 80);
            cqTailOff = u32(p, 84);
            long cqMaskOff = u32(p, 88);
            cqesOff = u32(p, 100);
            long sqSize = sqArrayOff + 4L * sqEntries;
            long cqSize = cqesOff + (long) CQE_BYTES * cqN;
            int prot = UblkSyscalls.PROT_READ | UblkSyscalls.PROT_WRITE;
            int flags = UblkSyscalls.MAP_SHARED | UblkSyscalls.MAP_POPULATE;
            if ((features & FEAT_SINGLE_MMAP) != 0) {
                sqRing = UblkSyscalls.mmap(Math.max(sqSize, cqSize), prot, flags, fd, OFF_SQ_RING, "io_uring rings");
                cqRing = sqRing;
            } else {
                sqRing = UblkSyscalls.mmap(sqSize, prot, flags, fd, OFF_SQ_RING, "io_uring SQ ring");
                cqRing = UblkSyscalls.mmap(cqSize, prot, flags, fd, OFF_CQ_RING, "io_uring CQ ring");
            }
            sqes = UblkSyscalls.mmap((long) SQE_BYTES * sqEntries, prot, flags, fd, OFF_SQES, "io_uring SQEs");
            sqMask = sqRing.get(ValueLayout.JAVA_INT, sqMaskOff);
            cqMask = cqRing.get(ValueLayout.JAVA_INT, cqMaskOff);
            for (int i = 0; i < sqEntries; i++) sqRing.set(ValueLayout.JAVA_INT, sqArrayOff + 4L * i, i);
            sqTail = (int) INT.getAcquire(sqRing, sqTailOff);
        } catch (ErrnoException | RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    private static long u32(MemorySegment p, long off) {
        return Integer.toUnsignedLong(p.get(ValueLayout.JAVA_INT, off));
    }

    int fd() {
        return fd;
    }

    /** Number of SQEs that can still be filled before a submit. */
    int freeSlots() {
        int head = (int) INT.getAcquire(sqRing, sqHeadOff);
        return sqEntries - (sqTail - head);
    }

    /** A zeroed SQE to fill, or null when the submission queue is full (submit first). */
    MemorySegment nextSqe() {
        if (freeSlots() <= 0) return null;
        MemorySegment sqe = sqes.asSlice((long) (sqTail & sqMask) * SQE_BYTES, SQE_BYTES);
        sqe.fill((byte) 0);
        sqTail++;
        unsubmitted++;
        return sqe;
    }

    /** Fills an IORING_OP_URING_CMD SQE header; the caller writes the payload at {@link #SQE_CMD}. */
    static void prepUringCmd(MemorySegment sqe, int fd, int cmdOp, long userData) {
        sqe.set(ValueLayout.JAVA_BYTE, 0, OP_URING_CMD);
        sqe.set(ValueLayout.JAVA_INT, 4, fd);
        sqe.set(ValueLayout.JAVA_INT, 8, cmdOp);
        sqe.set(ValueLayout.JAVA_LONG, 32, userData);
    }

    /** Fills an IORING_OP_READ SQE. */
    static void prepRead(MemorySegment sqe, int fd, MemorySegment buf, long offset, long userData) {
        sqe.set(ValueLayout.JAVA_BYTE, 0, OP_READ);
        sqe.set(ValueLayout.JAVA_INT, 4, fd);
        sqe.set(ValueLayout.JAVA_LONG, 8, offset);
        sqe.set(ValueLayout.JAVA_LONG, 16, buf.address());
        sqe.set(ValueLayout.JAVA_INT, 24, (int) buf.byteSize());
        sqe.set(ValueLayout.JAVA_LONG, 32, userData);
    }

    /**
     * Publishes every filled SQE and submits them with one io_uring_enter, waiting for at least
     * {@code minComplete} completions. Returns 0, or -errno for EINTR (the caller loops).
     */
    int submitAndWait(int minComplete) throws ErrnoException {
        INT.setRelease(sqRing, sqTailOff, sqTail);
        while (true) {
            int r = UblkSyscalls.ioUringEnter(fd, unsubmitted, minComplete, minComplete > 0 ? ENTER_GETEVENTS : 0);
            if (r >= 0) {
                unsubmitted -= Math.min(r, unsubmitted);
                if (unsubmitted == 0 || minComplete == 0) return 0;
                minComplete = 0; // some left unsubmitted (ring busy): push the rest without waiting
                continue;
            }
            if (r == -4) return r; // EINTR
            if (r == -11 || r == -16) { // EAGAIN/EBUSY: completions must be reaped first
                return r;
            }
            throw new ErrnoException("io_uring_enter", -r);
        }
    }

    /** Hands every available completion to {@code sink}; returns how many. */
    int reap(Completion sink) {
        int head = (int) INT.getAcquire(cqRing, cqHeadOff);
        int tail = (int) INT.getAcquire(cqRing, cqTailOff);
        int n = 0;
        while (head != tail) {
            long off = cqesOff + (long) (head & cqMask) * CQE_BYTES;
            long userData = cqRing.get(ValueLayout.JAVA_LONG, off);
            int res = cqRing.get(ValueLayout.JAVA_INT, off + 8);
            head++;
            n++;
            INT.setRelease(cqRing, cqHeadOff, head);
            sink.complete(userData, res);
            tail = (int) INT.getAcquire(cqRing, cqTailOff);
        }
        return n;
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        UblkSyscalls.munmap(sqes);
        if (cqRing != sqRing) UblkSyscalls.munmap(cqRing);
        UblkSyscalls.munmap(sqRing);
        LibC.close(fd);
    }
}
