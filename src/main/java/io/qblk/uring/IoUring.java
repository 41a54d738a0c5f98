package io.qblk.uring;

import static io.qblk.uring.UringLayouts.*;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * One io_uring instance: the ring file descriptor, the mapped submission ring, completion ring and
 * SQE array, and the raw operations on them.
 *
 * <p><b>Not thread-safe.</b> Exactly one thread (the ring's owner, see {@link RingThread}) fills SQEs,
 * calls {@link #submit}, and reaps completions. Memory ordering with the kernel: the owner publishes
 * SQEs with a release store of the SQ tail and observes the kernel's consumption with an acquire
 * load of the SQ head; it observes completions with an acquire load of the CQ tail and hands CQ slots
 * back with a release store of the CQ head.
 */
public final class IoUring implements AutoCloseable {
    /** io_uring_setup flags (IORING_SETUP_*). */
    public static final int SETUP_IOPOLL = 1, SETUP_SQPOLL = 1 << 1, SETUP_CQSIZE = 1 << 3, SETUP_CLAMP = 1 << 4,
            SETUP_SUBMIT_ALL = 1 << 7, SETUP_COOP_TASKRUN = 1 << 8, SETUP_TASKRUN_FLAG = 1 << 9, SETUP_SQE128 = 1 << 10,
            SETUP_CQE32 = 1 << 11, SETUP_SINGLE_ISSUER = 1 << 12, SETUP_DEFER_TASKRUN = 1 << 13;
    /** sq_ring->flags bits: completion work waits for the owner to enter (with {@link #SETUP_TASKRUN_FLAG}). */
    static final int SQ_TASKRUN = 1 << 2;
    /** io_uring_enter flags. */
    public static final int ENTER_GETEVENTS = 1;
    /** io_uring_params.features bits. */
    public static final int FEAT_SINGLE_MMAP = 1, FEAT_NODROP = 1 << 1;
    /** cqe->flags bits. */
    public static final int CQE_F_MORE = 1 << 1;
    /** io_uring_register opcodes. */
    static final int REGISTER_BUFFERS = 0, UNREGISTER_BUFFERS = 1, REGISTER_FILES = 2, UNREGISTER_FILES = 3,
            REGISTER_PROBE = 8;
    private static final int OP_SUPPORTED = 1;

    private static final long OFF_SQ_RING = 0L, OFF_CQ_RING = 0x8000000L, OFF_SQES = 0x10000000L;
    private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

    /** What the owner does with one completion; the values are copied out of the CQE before the call. */
    @FunctionalInterface
    public interface CompletionHandler {
        /** {@code big0}/{@code big1} are the big_cqe words of a CQE32 ring (0 otherwise). */
        void onCompletion(long userData, int res, int flags, long big0, long big1);
    }

    private final int fd;
    private final int setupFlags;
    private final int features;
    private final int sqEntries, cqEntries;
    private final int sqeSize, cqeSize;
    private final MemorySegment sqRing, cqRing, sqes;
    private final long sqHeadOff, sqTailOff, sqDroppedOff, sqFlagsOff;
    /** Set up with {@link #SETUP_TASKRUN_FLAG}: the kernel flags pending completion work in the SQ flags. */
    private final boolean taskrunFlag;
    private final int sqMask;
    private final long cqHeadOff, cqTailOff, cqOverflowOff, cqesOff;
    private final int cqMask;
    private final Sqe cursor;
    private final long sqArrayOff;
    /**
     * SQE allocation, apart from ring positions: the SQ array names, for each ring position, the SQE
     * the kernel reads there, so an SQE can stay untouched after the kernel consumed its position
     * ({@link #holdLast}). {@code sqeFree[0 .. sqeFreeTop)} are the SQEs free to fill;
     * {@code sqeAtPos[p & sqMask]} is the SQE put at ring position p; positions below
     * {@code reclaimedHead} have had their SQEs returned (or, when held, marked consumed).
     */
    private final int[] sqeFree, sqeAtPos;
    private int sqeFreeTop, reclaimedHead, lastSqe = -1;
    /** SQEs kept past their consumption until {@link #release}; and those of them already consumed. */
    private final boolean[] held, heldConsumed;
    /** SQ tail as the owner sees it (entries filled but maybe not yet published). */
    private int sqLocalTail;
    /** SQ tail last published to the kernel. */
    private int sqPublishedTail;
    private boolean closed;

    private IoUring(int fd, MemorySegment params) {
        this.fd = fd;
        this.setupFlags = (int) P_FLAGS.get(params, 0L);
        this.features = (int) P_FEATURES.get(params, 0L);
        this.sqEntries = (int) P_SQ_ENTRIES.get(params, 0L);
        this.cqEntries = (int) P_CQ_ENTRIES.get(params, 0L);
        this.sqeSize = (setupFlags & SETUP_SQE128) != 0 ? 128 : 64;
        this.cqeSize = (setupFlags & SETUP_CQE32) != 0 ? 32 : 16;
        this.sqArrayOff = Integer.toUnsignedLong((int) P_SQ_ARRAY.get(params, 0L));
        this.cqesOff = Integer.toUnsignedLong((int) P_CQ_CQES.get(params, 0L));
        long sqRingSize = sqArrayOff + 4L * sqEntries;
        long cqRingSize = cqesOff + (long) cqeSize * cqEntries;
        MemorySegment sq = MemorySegment.NULL, cq = MemorySegment.NULL, se = MemorySegment.NULL;
        try {
            if ((features & FEAT_SINGLE_MMAP) != 0) {
                long size = Math.max(sqRingSize, cqRingSize);
                sq = map(fd, size, OFF_SQ_RING, "SQ/CQ ring");
                cq = sq;
            } else {
                sq = map(fd, sqRingSize, OFF_SQ_RING, "SQ ring");
                cq = map(fd, cqRingSize, OFF_CQ_RING, "CQ ring");
            }
            se = map(fd, (long) sqeSize * sqEntries, OFF_SQES, "SQE array");
        } catch (ErrnoException e) {
            if (se.address() != 0) UringSyscalls.unmap(se);
            if (cq.address() != 0 && cq != sq) UringSyscalls.unmap(cq);
            if (sq.address() != 0) UringSyscalls.unmap(sq);
            UringSyscalls.close(fd);
            throw new IllegalStateException(e);
        }
        this.sqRing = sq;
        this.cqRing = cq;
        this.sqes = se;
        this.sqHeadOff = Integer.toUnsignedLong((int) P_SQ_HEAD.get(params, 0L));
        this.sqTailOff = Integer.toUnsignedLong((int) P_SQ_TAIL.get(params, 0L));
        this.sqDroppedOff = Integer.toUnsignedLong((int) P_SQ_DROPPED.get(params, 0L));
        this.sqFlagsOff = Integer.toUnsignedLong((int) P_SQ_FLAGS.get(params, 0L));
        this.taskrunFlag = (setupFlags & SETUP_TASKRUN_FLAG) != 0;
        this.sqMask = sqRing.get(ValueLayout.JAVA_INT, Integer.toUnsignedLong((int) P_SQ_RING_MASK.get(params, 0L)));
        this.cqHeadOff = Integer.toUnsignedLong((int) P_CQ_HEAD.get(params, 0L));
        this.cqTailOff = Integer.toUnsignedLong((int) P_CQ_TAIL.get(params, 0L));
        this.cqOverflowOff = Integer.toUnsignedLong((int) P_CQ_OVERFLOW.get(params, 0L));
        this.cqMask = cqRing.get(ValueLayout.JAVA_INT, Integer.toUnsignedLong((int) P_CQ_RING_MASK.get(params, 0L)));
        this.sqLocalTail = (int) INT.getAcquire(sqRing, sqTailOff);
        this.sqPublishedTail = sqLocalTail;
        this.reclaimedHead = sqLocalTail;
        this.sqeFree = new int[sqEntries];
        this.sqeAtPos = new int[sqEntries];
        this.held = new boolean[sqEntries];
        this.heldConsumed = new boolean[sqEntries];
        // Popped from the top: SQE 0 first, so a fresh ring fills SQEs in ring order.
        for (int i = 0; i < sqEntries; i++) sqeFree[i] = sqEntries - 1 - i;
        this.sqeFreeTop = sqEntries;
        this.cursor = new Sqe(sqes, sqeSize);
    }

    private static MemorySegment map(int fd, long size, long offset, String what) throws ErrnoException {
        MemorySegment m = UringSyscalls.mapShared(fd, size, offset);
        if (m.address() == 0) throw new ErrnoException("mmap io_uring " + what, UringSyscalls.errno());
        return m;
    }

    /**
     * Creates a ring with (at least) {@code entries} SQ entries; {@code flags} are IORING_SETUP_* bits
     * (e.g. {@link #SETUP_SQE128} | {@link #SETUP_CQE32} for ublk). The CQ gets twice the SQ entries.
     */
    public static IoUring create(int entries, int flags) throws ErrnoException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment params = a.allocate(PARAMS);
            P_FLAGS.set(params, 0L, flags | SETUP_CLAMP);
            int fd = UringSyscalls.setup(entries, params);
            if (fd < 0) throw new ErrnoException("io_uring_setup(" + entries + " entries, flags 0x"
                    + Integer.toHexString(flags) + ")", UringSyscalls.errno());
            try {
                return new IoUring(fd, params);
            } catch (IllegalStateException e) {
                if (e.getCause() instanceof ErrnoException ee) throw ee;
                throw e;
            }
        }
    }

    /**
     * {@link #create(int, int)} with {@code taskRun}'s bits added; a kernel that refuses them (EINVAL:
     * older than the mode) gets the next weaker mode, down to {@link TaskRun#OFF}. {@link #taskRun()}
     * says which one the ring got.
     */
    public static IoUring create(int entries, int flags, TaskRun taskRun) throws ErrnoException {
        for (TaskRun t = taskRun; ; t = t.weaker()) {
            try {
                return create(entries, flags | t.setupFlags());
            } catch (ErrnoException e) {
                if (t == TaskRun.OFF || e.errno() != Errno.EINVAL) throw e;
            }
        }
    }

    public int fd() { return fd; }
    public int sqEntries() { return sqEntries; }
    public int cqEntries() { return cqEntries; }
    public int features() { return features; }
    public int setupFlags() { return setupFlags; }
    public boolean sqe128() { return sqeSize == 128; }
    public boolean cqe32() { return cqeSize == 32; }
    /** How the kernel runs this ring's completion work (from its setup flags). */
    public TaskRun taskRun() { return TaskRun.of(setupFlags); }

    /** Free SQ slots the owner may still fill before the next submit (SQEs held back count as used). */
    public int sqSpace() {
        reclaim();
        return sqeFreeTop;
    }

    /**
     * Takes back the SQEs of the ring positions the kernel has consumed since the last call. The
     * kernel has read everything it needs from a consumed SQE, except a held one (see
     * {@link #holdLast}), which stays out until {@link #release}.
     */
    private void reclaim() {
        int head = (int) INT.getAcquire(sqRing, sqHeadOff);
        while (reclaimedHead != head) {
            int idx = sqeAtPos[reclaimedHead & sqMask];
            if (held[idx]) heldConsumed[idx] = true;
            else sqeFree[sqeFreeTop++] = idx;
            reclaimedHead++;
        }
    }

    /** SQEs filled but not yet handed to the kernel by {@link #submit}. */
    public int sqPending() {
        return sqLocalTail - (int) INT.getAcquire(sqRing, sqHeadOff);
    }

    /** Completions waiting in the CQ ring. */
    public int cqReady() {
        return (int) INT.getAcquire(cqRing, cqTailOff) - (int) INT.getAcquire(cqRing, cqHeadOff);
    }

    /** CQEs the kernel had to drop or hold back because the CQ ring was full. */
    public int cqOverflow() {
        return (int) INT.getAcquire(cqRing, cqOverflowOff);
    }

    /**
     * The next free SQE, zeroed, or {@code null} when the SQ ring is full. The returned cursor is
     * shared: fill it completely before asking for the next one.
     */
    public Sqe nextSqe() {
        if (sqSpace() <= 0) return null;
        int idx = sqeFree[--sqeFreeTop];
        int pos = sqLocalTail & sqMask;
        sqRing.set(ValueLayout.JAVA_INT, sqArrayOff + 4L * pos, idx); // published with the tail (release store)
        sqeAtPos[pos] = idx;
        lastSqe = idx;
        sqLocalTail++;
        return cursor.at(idx).clear();
    }

    /**
     * Keeps the SQE last returned by {@link #nextSqe()} untouched after the kernel consumed its ring
     * position, until {@link #release} with the returned index. For a URING_CMD that waits in a link:
     * from 6.10 (6.12's io_uring/uring_cmd.c read here: "defer memcpy until we need it") the kernel
     * keeps a pointer to such a command's SQE and reads it only when it issues the command, after
     * the requests before it in the link completed, not when it consumes the ring position.
     */
    public int holdLast() {
        if (lastSqe < 0) throw new IllegalStateException("no SQE to hold");
        held[lastSqe] = true;
        return lastSqe;
    }

    /** Ends {@link #holdLast}'s hold of SQE {@code index}: it is free again once consumed. */
    public void release(int index) {
        if (!held[index]) return;
        held[index] = false;
        if (heldConsumed[index]) {
            heldConsumed[index] = false;
            sqeFree[sqeFreeTop++] = index;
        }
    }

    /** SQEs held by {@link #holdLast} and not yet released. */
    public int heldSqes() {
        int n = 0;
        for (boolean h : held) if (h) n++;
        return n;
    }

    /** The SQE at index {@code index} of the SQE array (for inspection in tests). */
    Sqe sqeAt(int index) {
        return new Sqe(sqes, sqeSize).at(index & sqMask);
    }

    /** The SQE index the next {@link #nextSqe()} will fill, or -1 when none is free. */
    int nextSlot() {
        return sqSpace() > 0 ? sqeFree[sqeFreeTop - 1] : -1;
    }

    /** Publishes filled SQEs and submits them; returns how many the kernel consumed. */
    public int submit() throws ErrnoException {
        return submitAndWait(0);
    }

    /**
     * Publishes filled SQEs and enters the kernel once: submits them and, when {@code minComplete} > 0,
     * waits until that many completions are available. EINTR is reported as 0 submitted (the caller's
     * loop simply goes round again).
     */
    public int submitAndWait(int minComplete) throws ErrnoException {
        if (sqLocalTail != sqPublishedTail) {
            INT.setRelease(sqRing, sqTailOff, sqLocalTail); // SQE contents happen-before the kernel sees them
            sqPublishedTail = sqLocalTail;
        }
        int toSubmit = sqPending();
        // COOP/DEFER_TASKRUN: completions the kernel holds for us are posted only when we enter
        // (DEFER: only with GETEVENTS); the kernel's SQ flag says some are waiting.
        boolean workWaiting = taskrunFlag && ((int) INT.getAcquire(sqRing, sqFlagsOff) & SQ_TASKRUN) != 0;
        if (toSubmit == 0 && minComplete == 0 && !workWaiting) return 0;
        int flags = minComplete > 0 || workWaiting ? ENTER_GETEVENTS : 0;
        int r = UringSyscalls.enter(fd, toSubmit, minComplete, flags);
        if (r < 0) {
            int e = UringSyscalls.errno();
            if (e == Errno.EINTR) return 0;
            // EAGAIN/EBUSY: kernel short of resources or CQ overflow backlog; the caller reaps and retries.
            if (e == Errno.EAGAIN || e == Errno.EBUSY) return 0;
            throw new ErrnoException("io_uring_enter", e);
        }
        return r;
    }

    /**
     * Calls {@code handler} for every completion now in the CQ ring and returns how many there were.
     * The CQ head is advanced before each call, so a handler may itself submit and reap (re-entrantly).
     */
    public int reap(CompletionHandler handler) {
        int n = 0;
        while (true) {
            int head = (int) INT.getAcquire(cqRing, cqHeadOff);
            int tail = (int) INT.getAcquire(cqRing, cqTailOff);
            if (head == tail) return n;
            long at = cqesOff + (long) (head & cqMask) * cqeSize;
            long userData = (long) CQE_USER_DATA.get(cqRing, at);
            int res = (int) CQE_RES.get(cqRing, at);
            int flags = (int) CQE_FLAGS.get(cqRing, at);
            long big0 = 0, big1 = 0;
            if (cqeSize == 32) {
                big0 = cqRing.get(ValueLayout.JAVA_LONG, at + CQE_BIG_OFFSET);
                big1 = cqRing.get(ValueLayout.JAVA_LONG, at + CQE_BIG_OFFSET + 8);
            }
            INT.setRelease(cqRing, cqHeadOff, head + 1); // the slot may now be reused by the kernel
            n++;
            handler.onCompletion(userData, res, flags, big0, big1);
        }
    }

    /**
     * Registers {@code buffers} as fixed buffers 0..n-1 (IORING_REGISTER_BUFFERS) for READ_FIXED /
     * WRITE_FIXED. The segments must stay alive until {@link #unregisterBuffers()} or close.
     */
    public void registerBuffers(MemorySegment... buffers) throws ErrnoException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment iov = a.allocate(iovecArray(buffers.length));
            for (int i = 0; i < buffers.length; i++) {
                long at = i * IOVEC.byteSize();
                IOV_BASE.set(iov, at, buffers[i]);
                IOV_LEN.set(iov, at, buffers[i].byteSize());
            }
            if (UringSyscalls.register(fd, REGISTER_BUFFERS, iov, buffers.length) < 0) {
                throw new ErrnoException("io_uring_register buffers", UringSyscalls.errno());
            }
        }
    }

    public void unregisterBuffers() throws ErrnoException {
        if (UringSyscalls.register(fd, UNREGISTER_BUFFERS, MemorySegment.NULL, 0) < 0) {
            throw new ErrnoException("io_uring_register unregister buffers", UringSyscalls.errno());
        }
    }

    /**
     * Registers {@code fds} as fixed files 0..n-1 (IORING_REGISTER_FILES); an SQE then names file
     * {@code i} with fd = i and the {@link Sqe#FIXED_FILE} flag.
     */
    public void registerFiles(int... fds) throws ErrnoException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment arr = a.allocateFrom(ValueLayout.JAVA_INT, fds);
            if (UringSyscalls.register(fd, REGISTER_FILES, arr, fds.length) < 0) {
                throw new ErrnoException("io_uring_register files", UringSyscalls.errno());
            }
        }
    }

    public void unregisterFiles() throws ErrnoException {
        if (UringSyscalls.register(fd, UNREGISTER_FILES, MemorySegment.NULL, 0) < 0) {
            throw new ErrnoException("io_uring_register unregister files", UringSyscalls.errno());
        }
    }

    /** Whether the running kernel supports {@code opcode} (IORING_REGISTER_PROBE, kernel 5.6+). */
    public boolean supports(int opcode) throws ErrnoException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment probe = a.allocate(PROBE);
            if (UringSyscalls.register(fd, REGISTER_PROBE, probe, 256) < 0) {
                throw new ErrnoException("io_uring_register probe", UringSyscalls.errno());
            }
            int opsLen = Byte.toUnsignedInt((byte) PROBE_OPS_LEN.get(probe, 0L));
            if (opcode < 0 || opcode >= opsLen) return false;
            return ((short) PROBE_OP_FLAGS.get(probe, 0L, (long) opcode) & OP_SUPPORTED) != 0;
        }
    }

    /** Unmaps the rings and closes the ring fd; the kernel cancels whatever is still in flight. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        UringSyscalls.unmap(sqes);
        if (cqRing != sqRing) UringSyscalls.unmap(cqRing);
        UringSyscalls.unmap(sqRing);
        UringSyscalls.close(fd);
    }

    @Override
    public String toString() {
        return "io_uring fd " + fd + " (" + sqEntries + " SQ / " + cqEntries + " CQ entries, SQE " + sqeSize
                + " B, CQE " + cqeSize + " B)";
    }
}
