package io.qblk.ublk;

import io.qblk.util.DebugSwitches;
import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.target.BlockTarget;
import io.qblk.io.FilePlan;
import io.qblk.uring.CallerRing;
import io.qblk.uring.LinkedRequests;
import io.qblk.uring.RingClosedException;
import io.qblk.uring.RingOptions;
import io.qblk.uring.RingThread;
import io.qblk.uring.UringRequest;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One ublk hardware queue.
 *
 * <pre>
 *   RingThread "ublk-qN" (platform thread,            tag t (virtual thread), for each tag
 *   owns the queue's SQE128 io_uring)                 ─────────────────────────────────────
 *   ─────────────────────────────────                 execute(FETCH_REQ t) ──────────┐ park
 *   batches every pending command into one  ◄─────────────────────────────────────────┘
 *   io_uring_enter, reaps CQEs, unparks ────────────► read iod[t], run the target on buf[t]
 *                                           ◄──────── execute(COMMIT_AND_FETCH_REQ t, result), park
 * </pre>
 *
 * The kernel requires every io command of a queue to come from one task: only the ring's owner
 * thread ({@link RingThread}) submits, and the tags hand it their commands and park until the
 * completion arrives. A completion of 0 means iod[t] holds a new request; -ENODEV (UBLK_IO_RES_ABORT)
 * means the device is stopping and the tag ends.
 *
 * <p>Carrier: where the JDK allows it ({@link io.qblk.uring.VirtualCarrier}), the tag threads run on
 * the ring thread itself ({@link RingThread#newThread}), so the hand-offs drawn above are an enqueue
 * and a park on one OS thread: a request is reaped, served and committed without a thread switch, and
 * the target's file I/O must (and does, with the caller-ring backend) go through the ring. Otherwise
 * they run on the default virtual-thread scheduler and the ring thread wakes them across threads.
 *
 * <p>Each tag thread runs with the queue's ring bound as its {@link CallerRing}: a target whose file
 * sits on a caller-ring {@link io.qblk.uring.UringFileBackend} (raw and qcow2 under ublk) submits its
 * data and metadata I/O to this same ring, so it is batched with the queue's io commands in one
 * io_uring_enter and no carrier thread blocks in pread. The tag buffers are registered with the ring
 * (fixed buffers 0..depth-1), so I/O into a tag's own buffer goes out as READ_FIXED / WRITE_FIXED.
 */
final class UblkQueue {
    private static final Logger LOG = Logger.getLogger(UblkQueue.class.getName());
    static final int IO_FETCH_REQ = 0x20, IO_COMMIT_AND_FETCH_REQ = 0x21;
    static final int IOD_BYTES = 24, MAX_QUEUE_DEPTH = 4096;
    static final int OP_READ = 0, OP_WRITE = 1, OP_FLUSH = 2, OP_DISCARD = 3, OP_WRITE_ZEROES = 5;
    static final int F_FUA = 1 << 13, F_NOUNMAP = 1 << 15;
    /** QBLK_UBLK_TRACE=1 prints every io command and completion to stderr (debugging only; {@link DebugSwitches}). */
    private static final boolean TRACE = DebugSwitches.process().ublkTrace();

    /** QBLK_UBLK_FIXED_BUFFERS=0 keeps the tag buffers unregistered (plain READ/WRITE; for comparison; {@link DebugSwitches}). */
    private static final boolean FIXED_BUFFERS = DebugSwitches.process().fixedBuffers();

    /**
     * Reads linked to their commit ({@link #serveLinked}); QBLK_UBLK_LINKED_READS=0 turns it off. Safe
     * on 6.12 too because the ring keeps a linked commit's SQE untouched until the commit completes
     * ({@link io.qblk.uring.IoUring#holdLast}).
     */
    static final boolean LINKED_READS = DebugSwitches.process().linkedReads();

    /**
     * Writes without FUA linked to their commit ({@link #serveLinked}, docs/ordering.md W2): off unless
     * QBLK_UBLK_LINKED_WRITES=1. Measured slower in the VM so far (a falloc-preallocated image on ext4:
     * a direct write into an unwritten extent cannot go out without blocking, so io_uring hands it to
     * an io-wq worker, where the ordinary path writes it on the tag's own thread).
     */
    static final boolean LINKED_WRITES = DebugSwitches.process().linkedWrites();

    private static void trace(String s) {
        if (TRACE) System.err.println("ublk-trace " + s);
    }

    private final int qid, depth, cdevFd, maxIoBytes, fetchOp, commitOp;
    private final BlockTarget target;
    private final MemorySegment iods;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment buffers;
    private final Thread[] tagThreads;
    private final CountDownLatch fetchesQueued;
    private RingThread ring;
    private boolean buffersRegistered;
    private final LongAdder served = new LongAdder(), linkedReads = new LongAdder(), linkedWrites = new LongAdder(),
            linkRetries = new LongAdder();
    private volatile Throwable failure;
    private volatile boolean stopping;

    UblkQueue(int qid, int depth, int maxIoBytes, long deviceFlags, int cdevFd, BlockTarget target) throws UblkException {
        this.qid = qid;
        this.depth = depth;
        this.maxIoBytes = maxIoBytes;
        this.cdevFd = cdevFd;
        this.target = target;
        this.fetchOp = UblkControl.ioOp(IO_FETCH_REQ, deviceFlags);
        this.commitOp = UblkControl.ioOp(IO_COMMIT_AND_FETCH_REQ, deviceFlags);
        long page = 4096;
        long iodStride = roundUp((long) MAX_QUEUE_DEPTH * IOD_BYTES, page);
        long iodSize = roundUp((long) depth * IOD_BYTES, page);
        try {
            iods = UblkSyscalls.mmap(iodSize, UblkSyscalls.PROT_READ, UblkSyscalls.MAP_SHARED | UblkSyscalls.MAP_POPULATE,
                    cdevFd, qid * iodStride, "ublk io descriptors of queue " + qid);
        } catch (ErrnoException e) {
            throw UblkException.fromErrno("queue " + qid + " setup", e.errno());
        }
        buffers = arena.allocate((long) depth * maxIoBytes, page);
        tagThreads = new Thread[depth];
        fetchesQueued = new CountDownLatch(depth);
    }

    private static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }

    /** Starts the ring's owner thread and one virtual thread per tag; returns once every FETCH_REQ is handed over. */
    void start() throws UblkException {
        // Room for every tag's io command plus one backend I/O per tag (the target's file I/O shares this ring).
        int entries = Math.min(32768, Integer.highestOneBit(Math.max(2 * depth + 4, 8) - 1) << 1);
        try {
            ring = RingThread.start("ublk-q" + qid, RingOptions.forUblk(entries));
        } catch (IOException e) {
            throw new UblkException("queue " + qid + ": cannot set up its io_uring: " + e.getMessage());
        }
        if (FIXED_BUFFERS) {
            MemorySegment[] tagBuffers = new MemorySegment[depth];
            for (int t = 0; t < depth; t++) tagBuffers[t] = tagBuffer(t);
            try {
                ring.registerBuffers(tagBuffers);
                buffersRegistered = true;
            } catch (IOException e) { // e.g. ENOMEM under RLIMIT_MEMLOCK: plain READ/WRITE still work
                LOG.fine("ublk queue " + qid + ": tag buffers not registered (" + e.getMessage() + "); using plain reads and writes");
            }
        }
        for (int t = 0; t < depth; t++) {
            int tag = t;
            tagThreads[t] = ring.newThread("ublk-q" + qid + "-t" + t, () -> tagLoop(tag)); // carried by the ring thread when it can
        }
        for (Thread th : tagThreads) th.start();
        try {
            fetchesQueued.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    Throwable failure() {
        return failure;
    }

    int id() {
        return qid;
    }

    /** Requests this queue has completed (READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES, including failed ones). */
    long servedRequests() {
        return served.sum();
    }

    /** Reads served by one file read linked to their commit ({@link #serveLinked}). */
    long linkedReads() {
        return linkedReads.sum();
    }

    /** Writes served by one file write linked to their commit ({@link #serveLinked}). */
    long linkedWrites() {
        return linkedWrites.sum();
    }

    /** Linked commits the kernel refused (issued off the queue's task) and this queue sent again. */
    long linkRetries() {
        return linkRetries.sum();
    }

    /** Whether the tag threads run on the ring thread (the per-queue carrier). */
    boolean carried() {
        return ring != null && ring.carriesVirtualThreads();
    }

    /** How the kernel runs the ring's completion work, or null before the ring exists. */
    io.qblk.uring.TaskRun taskRun() {
        return ring == null ? null : ring.taskRun();
    }

    /** Whether the tag buffers are registered with the ring (backend I/O into them uses READ_FIXED / WRITE_FIXED). */
    boolean fixedBuffers() {
        return buffersRegistered;
    }

    private MemorySegment tagBuffer(int tag) {
        return buffers.asSlice((long) tag * maxIoBytes, maxIoBytes);
    }

    /** Waits until every tag thread has ended (after STOP_DEV aborted the fetches), then closes the ring. */
    void join(long millis) throws InterruptedException {
        long deadline = System.currentTimeMillis() + millis;
        for (Thread th : tagThreads) {
            if (th != null) th.join(Math.max(1, deadline - System.currentTimeMillis()));
        }
        stopping = true;
        if (ring != null) ring.close();
    }

    void close() {
        stopping = true;
        if (ring != null) ring.close();
        UblkSyscalls.munmap(iods);
        arena.close();
    }

    // ---------------------------------------------------------------- tag side (virtual threads)

    /**
     * Runs the tag's loop with this queue's ring bound as the caller's ring, so a target on a
     * {@link io.qblk.uring.UringFileBackend#openForCallerRing caller-ring backend} submits its file I/O
     * here (into the registered tag buffer as READ_FIXED / WRITE_FIXED when it can).
     */
    private void tagLoop(int tag) {
        MemorySegment buf = tagBuffer(tag);
        CallerRing binding = buffersRegistered ? new CallerRing(ring, buf, tag) : new CallerRing(ring);
        binding.run(() -> tagLoop(tag, buf));
    }

    private void tagLoop(int tag, MemorySegment buf) {
        MemorySegment cmd = arena.allocate(16, 8);
        UringRequest request = new UringRequest();
        boolean counted = false;
        try {
            cmd.set(ValueLayout.JAVA_SHORT, 0, (short) qid);
            cmd.set(ValueLayout.JAVA_SHORT, 2, (short) tag);
            cmd.set(ValueLayout.JAVA_INT, 4, 0);
            cmd.set(ValueLayout.JAVA_LONG, 8, buf.address());
            fetchesQueued.countDown(); // START_DEV (another thread) waits in the kernel for the FETCH itself
            counted = true;
            int res = ring.execute(request.prepUringCmd(cdevFd, fetchOp, cmd));
            LinkedIo linked = LINKED_READS || LINKED_WRITES ? new LinkedIo(request) : null;
            long base = (long) tag * IOD_BYTES;
            MemorySegment data = null; // buf's first `length` bytes, kept while requests keep that length (no slice per request)
            while (res == 0) { // UBLK_IO_RES_OK: iod[tag] holds a request
                int opFlags = iods.get(ValueLayout.JAVA_INT, base);
                long length = Integer.toUnsignedLong(iods.get(ValueLayout.JAVA_INT, base + 4)) << 9;
                long offset = iods.get(ValueLayout.JAVA_LONG, base + 8) << 9;
                int op = opFlags & 0xff;
                if (length <= maxIoBytes && (data == null || data.byteSize() != length)) data = buf.asSlice(0, length);
                if (linked != null && (op == OP_READ ? LINKED_READS : op == OP_WRITE && LINKED_WRITES && (opFlags & F_FUA) == 0)) {
                    int next = serveLinked(tag, op == OP_WRITE, offset, length, data, cmd, linked);
                    if (next != NOT_LINKED) {
                        res = next;
                        continue;
                    }
                }
                int result = serve(tag, opFlags, offset, length, data);
                served.increment();
                cmd.set(ValueLayout.JAVA_INT, 4, result);
                res = ring.execute(request.prepUringCmd(cdevFd, commitOp, cmd));
            }
            if (res != -Errno.ENODEV && !stopping) { // -ENODEV = UBLK_IO_RES_ABORT: device stopping
                LOG.warning("ublk queue " + qid + " tag " + tag + ": io command failed: " + Errno.name(-res));
            }
        } catch (RingClosedException e) {
            // the queue is being torn down
        } catch (Throwable e) {
            if (!stopping) {
                failure = e;
                LOG.log(Level.SEVERE, "ublk queue " + qid + " tag " + tag + " failed", e);
            }
        } finally {
            if (!counted) fetchesQueued.countDown();
        }
    }

    /** {@link #serveLinked}: the request was not answered, serve it the ordinary way. */
    private static final int NOT_LINKED = Integer.MIN_VALUE;

    /**
     * A tag's reusable pieces for file I/O linked to its commit: the target's {@link FilePlan}, the
     * file read or write (which releases the plan when it completes, on the ring thread, waking
     * nobody) and the chain READ/WRITE → COMMIT_AND_FETCH.
     */
    private static final class LinkedIo {
        final FilePlan plan = new FilePlan();
        final PlannedIo io = new PlannedIo(plan);
        final UringRequest commit;
        final LinkedRequests chain;

        LinkedIo(UringRequest commit) {
            this.commit = commit;
            this.chain = LinkedRequests.chain(io, commit);
        }
    }

    /** A file read or write that releases its plan's holds when it completes or fails. */
    private static final class PlannedIo extends UringRequest {
        private final FilePlan plan;

        PlannedIo(FilePlan plan) {
            this.plan = plan;
        }

        @Override
        protected void complete(int index, int res, int flags, long big0, long big1) {
            super.complete(index, res, flags, big0, big1);
            plan.release();
        }

        @Override
        protected void fail(IOException cause) {
            super.fail(cause);
            plan.release();
        }
    }

    /**
     * A READ, or a WRITE without FUA (decoded from iod[tag] by the tag loop), that the target can
     * serve with one plain file read or write ({@link BlockTarget#planRead}, {@link BlockTarget#planWrite})
     * goes out linked to its COMMIT_AND_FETCH: one submission, and the tag sleeps until the next
     * request instead of waking once for the file I/O and once more for the commit (the I/O's
     * completion runs on the ring thread and only releases the plan). Returns the commit's result
     * (0: the next request is in iod[tag]), or {@link #NOT_LINKED} when the request must be served
     * the ordinary way: no plan, or the file I/O failed or came back short, which breaks the link so
     * the kernel cancels the commit and nothing was answered (a short write is simply written again).
     *
     * <p>A commit refused with EINVAL after complete file I/O was issued by an io-wq worker rather
     * than the queue's own task (6.1 runs a link's next request on the worker that did the I/O, and
     * ublk takes io commands from the queue's task only); that refusal changes nothing, so the commit
     * is sent again, unlinked, from this tag.
     */
    private int serveLinked(int tag, boolean write, long offset, long length, MemorySegment data, MemorySegment cmd, LinkedIo l)
            throws IOException {
        if (length == 0 || length > maxIoBytes || offset < 0 || offset + length > target.size()) return NOT_LINKED;
        if (!(write ? target.planWrite(offset, data, l.plan) : target.planRead(offset, data, l.plan))) return NOT_LINKED;
        if (TRACE) trace("q" + qid + " tag " + tag + " linked " + (write ? "write" : "read") + " off " + offset + " len " + length
                + " file " + l.plan.fileOffset());
        if (write) {
            if (buffersRegistered) l.io.prepWriteFixed(l.plan.fd(), data, l.plan.fileOffset(), tag);
            else l.io.prepWrite(l.plan.fd(), data, l.plan.fileOffset());
        } else {
            if (buffersRegistered) l.io.prepReadFixed(l.plan.fd(), data, l.plan.fileOffset(), tag);
            else l.io.prepRead(l.plan.fd(), data, l.plan.fileOffset());
        }
        cmd.set(ValueLayout.JAVA_INT, 4, (int) length);
        l.commit.prepUringCmd(cdevFd, commitOp, cmd);
        int res = ring.executeForLast(l.chain);
        if (l.io.failure() == null && l.io.result() == length) {
            served.increment();
            (write ? linkedWrites : linkedReads).increment();
            if (res != -Errno.EINVAL) return res;
            linkRetries.increment();
            return ring.execute(l.commit.prepUringCmd(cdevFd, commitOp, cmd));
        }
        if (res != -Errno.ECANCELED) { // the kernel answered a request whose file I/O did not complete: must not happen
            LOG.severe("ublk queue " + qid + " tag " + tag + ": the commit of a failed linked " + (write ? "write" : "read")
                    + " (" + l.io.result() + ") was not cancelled (" + res + ")");
            throw new IOException("linked " + (write ? "write" : "read") + ": commit not cancelled after failed file I/O");
        }
        return NOT_LINKED;
    }

    private int tooLarge(int op, long length) {
        LOG.warning("ublk queue " + qid + ": op " + op + " of " + length + " bytes exceeds the " + maxIoBytes + "-byte buffer");
        return -Errno.EIO;
    }

    /**
     * Executes the request of iod[tag] (decoded by the tag loop) against the target; {@code data} is the
     * tag buffer's first {@code length} bytes (any segment when the length exceeds the buffer: refused
     * before use). Returns bytes done or -errno.
     */
    private int serve(int tag, int opFlags, long offset, long length, MemorySegment data) {
        int op = opFlags & 0xff;
        if (TRACE) trace("q" + qid + " tag " + tag + " op " + op + " off " + offset + " len " + length);
        try {
            if (op != OP_FLUSH && (offset < 0 || length < 0 || offset + length > target.size())) {
                LOG.warning("ublk queue " + qid + ": op " + op + " at " + offset + "+" + length + " is beyond the device");
                return -Errno.EIO;
            }
            switch (op) {
                case OP_READ -> {
                    if (length > maxIoBytes) return tooLarge(op, length);
                    target.read(offset, data);
                    return (int) length;
                }
                case OP_WRITE -> {
                    if (length > maxIoBytes) return tooLarge(op, length);
                    target.write(offset, data, (opFlags & F_FUA) != 0);
                    return (int) length;
                }
                case OP_FLUSH -> {
                    target.flush();
                    return 0;
                }
                case OP_DISCARD -> {
                    target.discard(offset, length);
                    return 0;
                }
                case OP_WRITE_ZEROES -> {
                    target.writeZeroes(offset, length, (opFlags & F_NOUNMAP) == 0);
                    return 0;
                }
                default -> {
                    return -Errno.EOPNOTSUPP;
                }
            }
        } catch (IOException | RuntimeException e) {
            LOG.warning("ublk queue " + qid + ": op " + op + " at " + offset + "+" + length + " failed: " + e.getMessage());
            return -io.qblk.target.TargetErrors.toErrno(e);
        }
    }
}
