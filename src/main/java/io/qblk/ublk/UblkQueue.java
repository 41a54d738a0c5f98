package io.qblk.ublk;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.LibC;
import io.qblk.target.BlockTarget;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One ublk hardware queue.
 *
 * <pre>
 *   owner (platform thread)                    tag t (virtual thread), for each tag
 *   ───────────────────────                    ────────────────────────────────────
 *   drains the submission list ◄── enqueue ─── FETCH_REQ, park
 *   fills URING_CMD SQEs, one io_uring_enter      │
 *   reaps CQEs ──────────── unpark(t) ─────────► read iod[t], run the target on buf[t]
 *   eventfd read re-armed (wake-up)  ◄── enqueue + eventfd ── COMMIT_AND_FETCH_REQ(result), park
 * </pre>
 *
 * The kernel requires every io command of a queue to come from one task, so only the owner touches
 * the ring; tags hand it commands through a lock-free list and sleep until their completion.
 */
final class UblkQueue {
    private static final Logger LOG = Logger.getLogger(UblkQueue.class.getName());
    static final int IO_FETCH_REQ = 0x20, IO_COMMIT_AND_FETCH_REQ = 0x21;
    static final int IOD_BYTES = 24, MAX_QUEUE_DEPTH = 4096;
    static final int OP_READ = 0, OP_WRITE = 1, OP_FLUSH = 2, OP_DISCARD = 3, OP_WRITE_ZEROES = 5;
    static final int F_FUA = 1 << 13, F_NOUNMAP = 1 << 15;
    private static final long WAKE_USER_DATA = 1L << 40;
    /** QBLK_UBLK_TRACE=1 prints every io command and completion to stderr (debugging only). */
    private static final boolean TRACE = "1".equals(System.getenv("QBLK_UBLK_TRACE"));

    private static void trace(String s) {
        if (TRACE) System.err.println("ublk-trace " + s);
    }

    private final int qid, depth, cdevFd, maxIoBytes;
    private final long deviceFlags;
    private final BlockTarget target;
    private final MemorySegment iods;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment buffers;
    private final Tag[] tags;
    private final ConcurrentLinkedQueue<Tag> submissions = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean ownerSleeping = new AtomicBoolean();
    private final AtomicInteger liveTags = new AtomicInteger();
    private final CountDownLatch fetchesQueued;
    private final int wakeFd;
    private final MemorySegment wakeBuf = arena.allocate(8, 8);
    private final MemorySegment wakeReadBuf = arena.allocate(8, 8);
    private Thread owner;
    private volatile Throwable failure;
    private volatile boolean stopping;

    /** Per-tag state shared between its virtual thread and the owner. */
    private static final class Tag {
        final int tag;
        final MemorySegment buf;
        volatile Thread thread;
        int cmd;            // written by the tag before enqueue, read by the owner
        int result;         // ditto
        volatile int cqeResult;
        volatile boolean done;

        Tag(int tag, MemorySegment buf) {
            this.tag = tag;
            this.buf = buf;
        }
    }

    UblkQueue(int qid, int depth, int maxIoBytes, long deviceFlags, int cdevFd, BlockTarget target) throws UblkException {
        this.qid = qid;
        this.depth = depth;
        this.maxIoBytes = maxIoBytes;
        this.deviceFlags = deviceFlags;
        this.cdevFd = cdevFd;
        this.target = target;
        long page = 4096;
        long iodStride = roundUp((long) MAX_QUEUE_DEPTH * IOD_BYTES, page);
        long iodSize = roundUp((long) depth * IOD_BYTES, page);
        try {
            iods = UblkSyscalls.mmap(iodSize, UblkSyscalls.PROT_READ, UblkSyscalls.MAP_SHARED | UblkSyscalls.MAP_POPULATE,
                    cdevFd, qid * iodStride, "ublk io descriptors of queue " + qid);
            wakeFd = UblkSyscalls.eventfd();
        } catch (ErrnoException e) {
            throw UblkException.fromErrno("queue " + qid + " setup", e.errno());
        }
        buffers = arena.allocate((long) depth * maxIoBytes, page);
        tags = new Tag[depth];
        for (int t = 0; t < depth; t++) tags[t] = new Tag(t, buffers.asSlice((long) t * maxIoBytes, maxIoBytes));
        fetchesQueued = new CountDownLatch(depth);
    }

    private static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }

    /** Starts the owner thread and one virtual thread per tag; returns once every FETCH_REQ is queued. */
    void start() throws UblkException {
        CountDownLatch ringReady = new CountDownLatch(1);
        owner = Thread.ofPlatform().name("ublk-q" + qid).daemon(true).start(() -> ownerLoop(ringReady));
        try {
            ringReady.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new UblkException("interrupted while starting queue " + qid);
        }
        if (failure != null) throw new UblkException("queue " + qid + ": " + failure.getMessage());
        liveTags.set(depth);
        for (Tag t : tags) {
            t.thread = Thread.ofVirtual().name("ublk-q" + qid + "-t" + t.tag).unstarted(() -> tagLoop(t));
        }
        for (Tag t : tags) {
            t.thread.start();
        }
        try {
            fetchesQueued.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    Throwable failure() {
        return failure;
    }

    /** Waits until the owner and every tag thread have ended (after STOP_DEV aborted the fetches). */
    void join(long millis) throws InterruptedException {
        long deadline = System.currentTimeMillis() + millis;
        for (Tag t : tags) {
            Thread th = t.thread;
            if (th != null) th.join(Math.max(1, deadline - System.currentTimeMillis()));
        }
        stopping = true;
        wakeOwner(true);
        if (owner != null) owner.join(Math.max(1, deadline - System.currentTimeMillis()));
    }

    void close() {
        UblkSyscalls.munmap(iods);
        LibC.close(wakeFd);
        arena.close();
    }

    // ---------------------------------------------------------------- tag side (virtual threads)

    private void tagLoop(Tag t) {
        try {
            int res = exchange(t, IO_FETCH_REQ, 0);
            while (res == 0) { // UBLK_IO_RES_OK: iod[t] holds a request
                int result = serve(t);
                res = exchange(t, IO_COMMIT_AND_FETCH_REQ, result);
            }
            if (res != -Errno.ENODEV && !stopping) { // -ENODEV = UBLK_IO_RES_ABORT: device stopping
                LOG.warning("ublk queue " + qid + " tag " + t.tag + ": io command failed: " + Errno.name(-res));
            }
        } catch (Throwable e) {
            failure = e;
            LOG.log(Level.SEVERE, "ublk queue " + qid + " tag " + t.tag + " failed", e);
        } finally {
            fetchesQueued.countDown();
            if (liveTags.decrementAndGet() == 0) {
                stopping = true;
                wakeOwner(true);
            }
        }
    }

    /** Hands a FETCH or COMMIT_AND_FETCH to the owner and parks until its completion arrives. */
    private int exchange(Tag t, int cmd, int result) {
        t.cmd = cmd;
        t.result = result;
        t.done = false;
        submissions.add(t);
        wakeOwner(false);
        if (cmd == IO_FETCH_REQ) fetchesQueued.countDown();
        while (!t.done) LockSupport.park(this);
        return t.cqeResult;
    }

    private void wakeOwner(boolean always) {
        if (always || ownerSleeping.compareAndSet(true, false)) UblkSyscalls.eventfdSignal(wakeFd, wakeBuf);
    }

    /** Executes the request in iod[t] against the target; returns bytes done or -errno. */
    private int serve(Tag t) {
        long base = (long) t.tag * IOD_BYTES;
        int opFlags = iods.get(ValueLayout.JAVA_INT, base);
        long sectors = Integer.toUnsignedLong(iods.get(ValueLayout.JAVA_INT, base + 4));
        long offset = iods.get(ValueLayout.JAVA_LONG, base + 8) << 9;
        long length = sectors << 9;
        int op = opFlags & 0xff;
        trace("q" + qid + " tag " + t.tag + " op " + op + " off " + offset + " len " + length);
        try {
            if (offset < 0 || length < 0 || offset + length > target.size()) return -Errno.EIO;
            switch (op) {
                case OP_READ -> {
                    if (length > maxIoBytes) return -Errno.EIO;
                    target.read(offset, t.buf.asSlice(0, length));
                    return (int) length;
                }
                case OP_WRITE -> {
                    if (length > maxIoBytes) return -Errno.EIO;
                    target.write(offset, t.buf.asSlice(0, length), (opFlags & F_FUA) != 0);
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
            return -Errno.EIO;
        }
    }

    // ---------------------------------------------------------------- owner side (platform thread)

    private void ownerLoop(CountDownLatch ringReady) {
        CommandRing ring;
        int entries = Integer.highestOneBit(Math.max(depth + 2, 4) - 1) << 1;
        try {
            ring = new CommandRing(entries, entries * 2);
        } catch (Throwable e) {
            failure = e;
            ringReady.countDown();
            return;
        }
        ringReady.countDown();
        int fetchOp = UblkControl.ioOp(IO_FETCH_REQ, deviceFlags);
        int commitOp = UblkControl.ioOp(IO_COMMIT_AND_FETCH_REQ, deviceFlags);
        try {
            armWake(ring);
            while (true) {
                Tag t;
                while ((t = submissions.peek()) != null) {
                    MemorySegment sqe = ring.nextSqe();
                    if (sqe == null) break;
                    submissions.poll();
                    trace("q" + qid + " submit tag " + t.tag + " cmd " + Integer.toHexString(t.cmd) + " res " + t.result);
                    CommandRing.prepUringCmd(sqe, cdevFd, t.cmd == IO_FETCH_REQ ? fetchOp : commitOp, t.tag);
                    long c = CommandRing.SQE_CMD;
                    sqe.set(ValueLayout.JAVA_SHORT, c, (short) qid);
                    sqe.set(ValueLayout.JAVA_SHORT, c + 2, (short) t.tag);
                    sqe.set(ValueLayout.JAVA_INT, c + 4, t.result);
                    sqe.set(ValueLayout.JAVA_LONG, c + 8, t.buf.address());
                }
                if (stopping && liveTags.get() == 0) break;
                ownerSleeping.set(true);
                int wait = submissions.isEmpty() ? 1 : 0;
                if (wait == 0) ownerSleeping.set(false);
                int r = ring.submitAndWait(wait);
                trace("q" + qid + " enter wait=" + wait + " -> " + r);
                ownerSleeping.set(false);
                if (r < 0 && r != -4 && r != -11 && r != -16) break;
                ring.reap(this::onCompletion);
                if (wakeFired && armWake(ring)) wakeFired = false;
            }
        } catch (Throwable e) {
            failure = e;
            LOG.log(Level.SEVERE, "ublk queue " + qid + " owner failed", e);
            for (Tag t : tags) { // nothing hangs: wake every tag with an abort
                t.cqeResult = -Errno.ENODEV;
                t.done = true;
                Thread th = t.thread;
                if (th != null) LockSupport.unpark(th);
            }
        } finally {
            ring.close();
        }
    }

    private boolean wakeFired;

    private boolean armWake(CommandRing ring) {
        MemorySegment sqe = ring.nextSqe();
        if (sqe == null) return false; // re-armed on the next pass
        CommandRing.prepRead(sqe, wakeFd, wakeReadBuf, 0, WAKE_USER_DATA);
        return true;
    }

    private void onCompletion(long userData, int res) {
        trace("q" + qid + " cqe " + Long.toHexString(userData) + " res " + res);
        if (userData == WAKE_USER_DATA) {
            wakeFired = true;
            return;
        }
        Tag t = tags[(int) userData];
        t.cqeResult = res;
        t.done = true;
        LockSupport.unpark(t.thread);
    }
}
