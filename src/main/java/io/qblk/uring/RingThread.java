package io.qblk.uring;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.ArrayDeque;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One io_uring owned by one platform thread: the only thread that fills SQEs, calls io_uring_enter
 * and reaps CQEs. Other threads (typically one virtual thread per ublk tag or NBD request) hand it
 * operations and park until their completion arrives.
 *
 * <pre>
 *  virtual threads            lock-free MPSC stack            owner platform thread
 *  execute(req) ──push──▶ [op]→[op]→[op] ──take all──▶ backlog ─▶ SQEs ─▶ io_uring_enter (one per batch)
 *     park ◀──────────── unpark ◀──────── op.complete() ◀── reap CQEs (user_data = slot ─▶ op, index)
 *  (push while the owner sleeps ──▶ write eventfd ──▶ the always-armed eventfd READ completes ──▶ owner wakes)
 * </pre>
 *
 * <p>Back-pressure: operations that do not fit the SQ ring or exceed the in-flight limit (CQ entries
 * minus reserved ones, so the CQ never overflows) wait in the owner's FIFO backlog; blocking submitters
 * stay parked meanwhile, nothing is dropped. Code running on the owner thread itself (completion
 * handlers, tasks from {@link #callOnOwner}) may submit and even {@link #execute} without deadlock: on
 * the owner thread execute runs the loop inline until its request completes.
 *
 * <p>Carrier mode ({@link RingOptions#carrier()}, when {@link VirtualCarrier#available()}): the virtual
 * threads made by {@link #newThread} run on the owner thread itself, between batches. A carried thread
 * that executes a request puts it straight into the backlog and parks; the completion unparks it onto
 * the owner's run queue, so a request is reaped, served and resubmitted without leaving the thread (no
 * eventfd write, no cross-thread unpark). Carried code must never block the thread: file I/O goes
 * through this ring, locks park. Threads woken from elsewhere (a lock released by another queue, a
 * timed park) are queued for the owner and wake it like a submission.
 *
 * <pre>
 *  owner loop:  run ready carried threads ─▶ fill SQEs ─▶ io_uring_enter ─▶ reap: complete ─▶ unpark = enqueue
 *                 (each runs until it parks on its next request)
 * </pre>
 *
 * <p>Closing fails queued operations with {@link RingClosedException}, asks the kernel to cancel what
 * is in flight, waits up to {@link RingOptions#closeTimeout()} for it, fails the rest, then releases
 * the ring. Later submissions fail immediately.
 */
public final class RingThread implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(RingThread.class.getName());
    private static final long WAKE_UD = -1L, CANCEL_UD = -2L, TIMEOUT_UD = -3L;
    private static final int RESERVED_CQES = 3;
    private static final int POOL_LIMIT = 1024;

    private static final UringOp CLOSED = new UringOp() {
        @Override protected void prepare(Sqe sqe, int index) {}
        @Override protected void complete(int index, int res, int flags, long big0, long big1) {}
        @Override protected void fail(IOException cause) {}
    };
    private static final VarHandle INCOMING, WAKE_PENDING;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            INCOMING = l.findVarHandle(RingThread.class, "incoming", UringOp.class);
            WAKE_PENDING = l.findVarHandle(RingThread.class, "wakePending", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** Bound in the virtual threads this ring carries (see {@link #carriedHere}). */
    private static final ScopedValue<RingThread> CARRIED = ScopedValue.newInstance();

    private final String name;
    private final RingOptions options;
    private final Thread owner;
    /** Carrier mode: this ring's virtual threads run on {@link #owner}. */
    private final boolean carrying;
    private final Thread.Builder.OfVirtual carriedThreads;
    /** Carried continuations made runnable on the owner thread (owner-only). */
    private final ArrayDeque<Runnable> ready = new ArrayDeque<>();
    /** Carried continuations made runnable by other threads. */
    private final java.util.concurrent.ConcurrentLinkedQueue<Runnable> remoteReady = new java.util.concurrent.ConcurrentLinkedQueue<>();
    /** Set once the owner has run its last carried continuation; later ones run on the common pool. */
    private volatile boolean carrierDone;
    private final CompletableFuture<Void> started = new CompletableFuture<>();

    // ---- shared between submitters and the owner
    @SuppressWarnings("unused") // through INCOMING
    private volatile UringOp incoming;
    private volatile boolean sleeping;
    @SuppressWarnings("unused") // through WAKE_PENDING
    private volatile int wakePending;
    private volatile boolean closing;
    private volatile boolean eventFdClosed;
    private final AtomicInteger wakers = new AtomicInteger();
    private volatile long enterCalls, sqesSubmitted;
    private final java.util.concurrent.atomic.LongAdder wakeWrites = new java.util.concurrent.atomic.LongAdder();
    private final MemorySegment wakeValue = Arena.ofAuto().allocate(ValueLayout.JAVA_LONG);
    private int eventFd = -1; // published by the start handshake
    /** Most SQEs one operation of {@link #executeAll} takes: what the ring can hold at once (start handshake). */
    private int batchLimit = 1;
    /** The task-run mode the kernel gave the ring (start handshake). */
    private TaskRun taskRun = TaskRun.OFF;

    // ---- owner-only state
    private IoUring ring;
    private final MemorySegment wakeBuffer = Arena.ofAuto().allocate(ValueLayout.JAVA_LONG);
    private final MemorySegment timeout = Arena.ofAuto().allocate(16, 8);
    private boolean wakeArmed, wakeNeedsArm, timeoutArmed, shutDown;
    private final ArrayDeque<UringOp> backlog = new ArrayDeque<>();
    private UringOp[] slotOp;
    private int[] slotIndex;
    private boolean[] slotPrepFailed;
    /** The SQE a slot's request keeps until its completion ({@link IoUring#holdLast}), or -1. */
    private int[] slotHeldSqe;
    private int[] freeSlots;
    private int freeTop;

    // ---- pooled requests for the blocking convenience methods
    private final UringRequest[] pool = new UringRequest[POOL_LIMIT];
    private int poolSize;

    private RingThread(String name, RingOptions options) {
        this.name = name;
        this.options = options;
        this.owner = Thread.ofPlatform().name(name).daemon(true).unstarted(this::run);
        this.carrying = options.carrier() && VirtualCarrier.available();
        this.carriedThreads = carrying ? VirtualCarrier.builder(this::schedule) : null;
        wakeValue.set(ValueLayout.JAVA_LONG, 0, 1L);
        timeout.set(ValueLayout.JAVA_LONG, 0, 0L);
        timeout.set(ValueLayout.JAVA_LONG, 8, 50_000_000L); // 50 ms poll while closing
    }

    /**
     * Starts a platform thread named {@code name}, creates the ring on it (so the kernel sees that
     * thread as the ring's submitter task) and returns once the ring is ready.
     */
    public static RingThread start(String name, RingOptions options) throws IOException {
        RingThread t = new RingThread(name, options);
        t.owner.start();
        try {
            t.started.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof IOException io) throw io;
            throw new IOException("cannot start ring thread " + name + ": " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            t.close();
            throw new IOException("interrupted while starting ring thread " + name);
        }
        return t;
    }

    public String name() {
        return name;
    }

    public Thread ownerThread() {
        return owner;
    }

    public boolean isOwnerThread() {
        return Thread.currentThread() == owner;
    }

    /** The ring itself, for code running on the owner thread only (e.g. inside {@link #callOnOwner}). */
    public IoUring ring() {
        if (!isOwnerThread()) throw new IllegalStateException("the ring of " + name + " belongs to its owner thread");
        return ring;
    }

    /** Number of io_uring_enter calls so far (batching indicator: compare with {@link #submittedSqes()}). */
    public long enterCalls() {
        return enterCalls;
    }

    public long submittedSqes() {
        return sqesSubmitted;
    }

    /** Number of eventfd writes submitters made to wake a sleeping owner. */
    public long wakeUps() {
        return wakeWrites.sum();
    }

    public boolean isClosed() {
        return closing;
    }

    /** How the kernel runs this ring's completion work: the options' mode, or weaker where the kernel refused it. */
    public TaskRun taskRun() {
        return taskRun;
    }

    /** Whether this ring's owner thread carries the virtual threads made by {@link #newThread}. */
    public boolean carriesVirtualThreads() {
        return carrying;
    }

    /**
     * An unstarted virtual thread running {@code task}: carried by the owner thread in carrier mode
     * (see the class comment), otherwise on the default scheduler.
     */
    public Thread newThread(String threadName, Runnable task) {
        if (!carrying) return Thread.ofVirtual().name(threadName).unstarted(task);
        return carriedThreads.name(threadName).unstarted(() -> ScopedValue.where(CARRIED, this).run(task));
    }

    /** Whether the current thread is one this ring carries, running on its owner. */
    private boolean carriedHere() {
        return carrying && !carrierDone && CARRIED.isBound() && CARRIED.get() == this;
    }

    /** The scheduler of the carried threads: a continuation to run on the owner thread. */
    private void schedule(Runnable continuation) {
        if (!carrierDone && (Thread.currentThread() == owner || carriedHere())) { // on the owner's OS thread
            ready.addLast(continuation);
            return;
        }
        remoteReady.add(continuation);
        if (carrierDone) {
            drainRemoteToPool(); // the owner has ended: run what is left elsewhere
        } else if (sleeping) {
            wake();
        }
    }

    private void drainRemoteToPool() {
        Runnable r;
        while ((r = remoteReady.poll()) != null) java.util.concurrent.ForkJoinPool.commonPool().execute(r);
    }

    /** Runs the carried continuations that are ready now (owner thread, main loop only). */
    private void runReady() {
        Runnable r;
        while ((r = remoteReady.poll()) != null) ready.addLast(r);
        for (int n = ready.size(); n > 0; n--) {
            Runnable c = ready.pollFirst();
            try {
                c.run();
            } catch (Throwable t) {
                LOG.log(System.Logger.Level.ERROR, "carried thread on " + name + " failed", t);
            }
        }
    }

    private boolean hasReady() {
        return !ready.isEmpty() || !remoteReady.isEmpty();
    }

    // =====================================================================================
    // Submission API (any thread)

    /**
     * Hands {@code op} to the owner thread without waiting. Its {@link UringOp#complete} runs on the
     * owner thread; if the ring is closed, {@link UringOp#fail} is called (possibly right here).
     * On the owner thread itself the op joins the backlog and goes out with the next batch.
     */
    public void submit(UringOp op) {
        if (isOwnerThread() || carriedHere()) {
            if (shutDown) op.fail(closedException());
            else backlog.addLast(op);
            return;
        }
        push(op);
    }

    /**
     * Submits {@code request} and waits for its completion; returns the kernel's raw result (negative
     * errno on failure, see {@link UringRequest#checkedResult}). Throws {@link RingClosedException}
     * when the ring closed before the request completed.
     */
    public int execute(UringRequest request) throws IOException {
        request.arm();
        queueAndAwait(request, request);
        IOException f = request.failure();
        if (f != null) throw f;
        return request.result();
    }

    /**
     * Submits the requests as one chain of linked SQEs (IOSQE_IO_LINK) in a single batch and waits for
     * all of them; each request then holds its own result (-ECANCELED after a failed link).
     */
    public void executeLinked(UringRequest... chain) throws IOException {
        if (chain.length == 0) return;
        for (UringRequest r : chain) r.arm();
        queueAndAwait(new LinkedRequests(chain), chain[chain.length - 1]);
        if (isOwnerThread()) while (!allDone(chain)) loopOnce(true, false); // a link completes in order: rarely loops
        else for (UringRequest r : chain) r.await();
        for (UringRequest r : chain) if (r.failure() != null) throw r.failure();
    }

    /**
     * Submits {@code chain} (from {@link LinkedRequests#chain}) as linked SQEs in one batch and waits
     * for its last request only; returns that request's raw result (-ECANCELED when an earlier one
     * failed or came back short, which breaks the link). The earlier requests wake nobody: their
     * completions run on the owner thread, before the last one's (a link completes in order). A ublk
     * tag links a file read to its COMMIT_AND_FETCH this way and sleeps until the next request.
     */
    public int executeForLast(LinkedRequests chain) throws IOException {
        UringRequest last = chain.last();
        chain.armForLast();
        queueAndAwait(chain, last);
        IOException f = last.failure();
        if (f != null) throw f;
        return last.result();
    }

    /**
     * Queues {@code op} and waits until {@code awaited} (one of its requests) has completed: on the
     * owner thread by running the loop inline, on a carried thread straight into the next batch and
     * park, from anywhere else through the submission stack. On a ring already shut down the op is
     * failed (its requests' fail handlers run: they may hold something to release) and this throws.
     */
    private void queueAndAwait(UringOp op, UringRequest awaited) throws IOException {
        boolean owner = isOwnerThread(), here = owner || carriedHere();
        if (here && shutDown) {
            RingClosedException e = closedException();
            op.fail(e);
            throw e;
        }
        if (owner) {
            backlog.addLast(op);
            while (!awaited.isDone()) loopOnce(true, false);
        } else if (here) { // on the owner's OS thread: straight into the next batch, then park
            backlog.addLast(op);
            awaited.await();
        } else {
            push(op);
            awaited.await();
        }
    }

    /** Most SQEs of one operation of {@link #executeAll}: a larger batch goes out as several, queued together. */
    static final int BATCH_SQES = 32;

    /**
     * Submits independent requests together (no links: the kernel may run them in any order and at
     * once), as few operations as the ring allows ({@link #BATCH_SQES} SQEs each, at most half the
     * ring) queued in one go, so
     * that they leave in the same io_uring_enter where the ring has room, and waits for all of them;
     * each request then holds its own result. Throws a request's failure (e.g. the ring closed) only
     * after every request has completed or failed.
     */
    public void executeAll(UringRequest... batch) throws IOException {
        if (batch.length == 0) return;
        for (UringRequest r : batch) r.arm();
        int per = batchLimit, ops = (batch.length + per - 1) / per;
        boolean inline = isOwnerThread();
        if ((inline || carriedHere()) && shutDown) throw closedException();
        for (int i = 0; i < ops; i++) {
            int from = i * per;
            UringOp op = new LinkedRequests(batch, from, Math.min(per, batch.length - from), false);
            if (inline || carriedHere()) backlog.addLast(op);
            else push(op);
        }
        if (inline) while (!allDone(batch)) loopOnce(true, false);
        else for (UringRequest r : batch) r.await();
        for (UringRequest r : batch) if (r.failure() != null) throw r.failure();
    }

    private static boolean allDone(UringRequest[] chain) {
        for (UringRequest r : chain) if (!r.isDone()) return false;
        return true;
    }

    /** Runs {@code task} on the owner thread (between batches) and returns its result. */
    public <T> T callOnOwner(Callable<T> task) throws IOException {
        if (isOwnerThread()) {
            if (shutDown) throw closedException();
            try {
                return task.call();
            } catch (IOException | RuntimeException e) {
                throw e;
            } catch (Exception e) {
                throw new IOException(e);
            }
        }
        CompletableFuture<T> result = new CompletableFuture<>();
        push(new UringOp() {
            @Override protected int sqeCount() { return 0; }
            @Override protected void prepare(Sqe sqe, int index) {
                try {
                    result.complete(task.call());
                } catch (Throwable t) {
                    result.completeExceptionally(t);
                }
            }
            @Override protected void complete(int index, int res, int flags, long big0, long big1) {}
            @Override protected void fail(IOException cause) { result.completeExceptionally(cause); }
        });
        try {
            return result.get();
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof IOException io) throw io;
            if (c instanceof RuntimeException re) throw re;
            if (c instanceof Error er) throw er;
            throw new IOException(c);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted waiting for ring thread " + name);
        }
    }

    /** Registers fixed buffers 0..n-1 for READ_FIXED/WRITE_FIXED (replaces nothing: unregister first). */
    public void registerBuffers(MemorySegment... buffers) throws IOException {
        callOnOwner(() -> {
            ring.registerBuffers(buffers);
            return null;
        });
    }

    /** Registers fixed files 0..n-1 (use fd = index and {@link Sqe#FIXED_FILE} in SQEs). */
    public void registerFiles(int... fds) throws IOException {
        callOnOwner(() -> {
            ring.registerFiles(fds);
            return null;
        });
    }

    /** Whether the kernel supports {@code opcode} (e.g. {@link Opcode#URING_CMD} for ublk). */
    public boolean supports(int opcode) throws IOException {
        return callOnOwner(() -> ring.supports(opcode));
    }

    public void unregisterBuffers() throws IOException {
        callOnOwner(() -> {
            ring.unregisterBuffers();
            return null;
        });
    }

    // ---- pooled blocking convenience calls

    /** A request object from this ring's pool; give it back with {@link #release}. */
    public UringRequest acquire() {
        synchronized (pool) {
            if (poolSize > 0) {
                UringRequest r = pool[--poolSize];
                pool[poolSize] = null;
                return r;
            }
        }
        return new UringRequest();
    }

    public void release(UringRequest r) {
        synchronized (pool) {
            if (poolSize < POOL_LIMIT) pool[poolSize++] = r;
        }
    }

    public void nop() throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepNop());
            r.checkedResult("io_uring nop");
        } finally {
            release(r);
        }
    }

    /** One READ; returns the bytes read (may be short; 0 at end of file). */
    public int read(int fd, MemorySegment buf, long offset) throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepRead(fd, buf, offset));
            return r.checkedResult("io_uring read fd " + fd + " at " + offset);
        } finally {
            release(r);
        }
    }

    /** One WRITE; returns the bytes written (may be short). */
    public int write(int fd, MemorySegment buf, long offset) throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepWrite(fd, buf, offset));
            return r.checkedResult("io_uring write fd " + fd + " at " + offset);
        } finally {
            release(r);
        }
    }

    /** One RECV from socket {@code fd} into {@code buf}; returns the bytes received (0 at end of stream). */
    public int recv(int fd, MemorySegment buf) throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepRecv(fd, buf, 0));
            return r.checkedResult("io_uring recv fd " + fd);
        } finally {
            release(r);
        }
    }

    public void fsync(int fd, boolean dataOnly) throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepFsync(fd, dataOnly));
            r.checkedResult(dataOnly ? "io_uring fdatasync fd " + fd : "io_uring fsync fd " + fd);
        } finally {
            release(r);
        }
    }

    public void fallocate(int fd, int mode, long offset, long length) throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepFallocate(fd, mode, offset, length));
            r.checkedResult("io_uring fallocate fd " + fd + " mode " + mode + " at " + offset + "+" + length);
        } finally {
            release(r);
        }
    }

    /**
     * URING_CMD {@code cmdOp} on {@code fd} with {@code payload} in the command area; waits and returns
     * the result (>= 0), or throws {@link ErrnoException} for a negative result.
     */
    public int uringCmd(int fd, int cmdOp, MemorySegment payload) throws IOException {
        UringRequest r = acquire();
        try {
            execute(r.prepUringCmd(fd, cmdOp, payload));
            return r.checkedResult("io_uring cmd 0x" + Integer.toHexString(cmdOp) + " fd " + fd);
        } finally {
            release(r);
        }
    }

    // =====================================================================================
    // Submitter side of the hand-off

    private void push(UringOp op) {
        while (true) {
            UringOp head = (UringOp) INCOMING.getVolatile(this);
            if (head == CLOSED) {
                op.fail(closedException());
                return;
            }
            op.next = head;
            if (INCOMING.compareAndSet(this, head, op)) break;
        }
        // Dekker pairing with the owner: we published op, then read sleeping; the owner sets sleeping,
        // then re-reads incoming. One of the two sees the other.
        if (sleeping) wake();
    }

    /** Writes the eventfd once per sleep (the flag is cleared when the owner reaps the wake-up). */
    private void wake() {
        if (!WAKE_PENDING.compareAndSet(this, 0, 1)) return;
        wakers.incrementAndGet();
        try {
            if (!eventFdClosed) {
                UringSyscalls.write(eventFd, wakeValue, 8);
                wakeWrites.increment();
            }
        } finally {
            wakers.decrementAndGet();
        }
    }

    private RingClosedException closedException() {
        return new RingClosedException("io_uring ring thread " + name + " is closed");
    }

    // =====================================================================================
    // Owner thread

    private void run() {
        try {
            ring = IoUring.create(options.entries(), options.setupFlags(), options.taskRun());
            int efd = UringSyscalls.eventfd(0, UringSyscalls.EFD_CLOEXEC);
            if (efd < 0) throw new ErrnoException("eventfd", UringSyscalls.errno());
            eventFd = efd;
            int slots = Math.max(1, ring.cqEntries() - RESERVED_CQES);
            slotOp = new UringOp[slots];
            slotIndex = new int[slots];
            slotPrepFailed = new boolean[slots];
            slotHeldSqe = new int[slots];
            java.util.Arrays.fill(slotHeldSqe, -1);
            freeSlots = new int[slots];
            for (int i = 0; i < slots; i++) freeSlots[i] = slots - 1 - i;
            freeTop = slots;
            batchLimit = Math.max(1, Math.min(BATCH_SQES, Math.min(ring.sqEntries(), slots) / 2));
            taskRun = ring.taskRun();
        } catch (Throwable t) {
            if (ring != null) ring.close();
            started.completeExceptionally(t);
            return;
        }
        started.complete(null);
        armWake();
        try {
            while (!closing) loopOnce(true, carrying);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "ring thread " + name + " failed; closing it", t);
            closing = true;
        } finally {
            shutdown();
        }
    }

    /**
     * One turn of the owner loop: run ready carried threads ({@code runTasks}: the main loop only, not
     * a nested {@link #execute} on the owner), take new work, fill SQEs, one io_uring_enter, dispatch
     * completions.
     */
    private void loopOnce(boolean mayBlock, boolean runTasks) throws ErrnoException {
        if (runTasks) runReady();
        takeIncoming();
        fill();
        int wait = 0;
        if (mayBlock) {
            sleeping = true;
            if (INCOMING.getVolatile(this) == null && !closing && ring.cqReady() == 0 && !(runTasks && hasReady())) wait = 1;
            else sleeping = false;
        }
        try {
            int n = ring.submitAndWait(wait);
            if (n > 0 || wait > 0) {
                enterCalls = enterCalls + 1;
                sqesSubmitted = sqesSubmitted + n;
            }
        } finally {
            sleeping = false;
        }
        ring.reap(this::dispatch);
    }

    private void takeIncoming() {
        UringOp h = (UringOp) INCOMING.getAndSet(this, (UringOp) null);
        if (h == null) return;
        UringOp fifo = null;
        while (h != null) { // the stack is newest-first: reverse it
            UringOp n = h.next;
            h.next = fifo;
            fifo = h;
            h = n;
        }
        while (fifo != null) {
            UringOp n = fifo.next;
            fifo.next = null;
            backlog.addLast(fifo);
            fifo = n;
        }
    }

    private void fill() {
        if (wakeNeedsArm) armWake();
        while (!backlog.isEmpty()) {
            UringOp op = backlog.peekFirst();
            int n = op.sqeCount();
            if (n == 0) {
                backlog.pollFirst();
                try {
                    op.prepare(null, 0);
                } catch (Throwable t) {
                    LOG.log(System.Logger.Level.ERROR, "task on ring thread " + name + " failed", t);
                }
                continue;
            }
            if (n > ring.sqEntries() || n > slotOp.length) {
                backlog.pollFirst();
                op.fail(new ErrnoException("io_uring: " + n + " linked SQEs exceed the ring size " + ring.sqEntries(),
                        Errno.EINVAL));
                continue;
            }
            if (ring.sqSpace() < n || freeTop < n) break; // back-pressure: wait for completions
            backlog.pollFirst();
            boolean afterLink = false;
            for (int i = 0; i < n; i++) {
                int slot = freeSlots[--freeTop];
                slotOp[slot] = op;
                slotIndex[slot] = i;
                Sqe sqe = ring.nextSqe();
                try {
                    op.prepare(sqe, i);
                } catch (Throwable t) {
                    LOG.log(System.Logger.Level.WARNING, "preparing " + op + " failed: " + t);
                    int link = sqe.flags() & Sqe.IO_LINK;
                    sqe.clear().prepNop().flags(link);
                    slotPrepFailed[slot] = true;
                }
                sqe.userData(slot);
                // A URING_CMD waiting in a link may be read by the kernel only when it is issued
                // (IoUring#holdLast): its SQE stays untouched until its completion.
                if (afterLink && sqe.opcode() == Opcode.URING_CMD) slotHeldSqe[slot] = ring.holdLast();
                afterLink = (sqe.flags() & Sqe.IO_LINK) != 0;
            }
        }
    }

    private void armWake() {
        Sqe sqe = ring.nextSqe();
        if (sqe == null) {
            wakeNeedsArm = true;
            return;
        }
        wakeNeedsArm = false;
        sqe.prepRead(eventFd, wakeBuffer.address(), 8, 0).userData(WAKE_UD);
        wakeArmed = true;
    }

    private void dispatch(long userData, int res, int flags, long big0, long big1) {
        if (userData < 0) {
            if (userData == WAKE_UD) {
                wakeArmed = false;
                WAKE_PENDING.setVolatile(this, 0);
                if (!shutDown) armWake();
            } else if (userData == TIMEOUT_UD) {
                timeoutArmed = false;
            }
            return;
        }
        int slot = (int) userData;
        if (slot >= slotOp.length || slotOp[slot] == null) {
            LOG.log(System.Logger.Level.WARNING, "ring " + name + ": completion for unknown user_data " + userData);
            return;
        }
        UringOp op = slotOp[slot];
        int index = slotIndex[slot];
        if (slotPrepFailed[slot]) {
            res = -Errno.EINVAL;
            slotPrepFailed[slot] = false;
        }
        if ((flags & IoUring.CQE_F_MORE) == 0) {
            slotOp[slot] = null;
            freeSlots[freeTop++] = slot;
            if (slotHeldSqe[slot] >= 0) { // the kernel has issued (or cancelled) the command: done with its SQE
                ring.release(slotHeldSqe[slot]);
                slotHeldSqe[slot] = -1;
            }
        }
        try {
            op.complete(index, res, flags, big0, big1);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "completion handler of " + op + " failed", t);
        }
    }

    /** The ring itself; owner thread only (tests inspect it from a task run there). */
    IoUring uringForOwner() {
        return ring;
    }

    private int inflight() {
        return slotOp.length - freeTop;
    }

    private void shutdown() {
        shutDown = true;
        // 1. Refuse new work and fail everything not yet submitted.
        UringOp h = (UringOp) INCOMING.getAndSet(this, CLOSED);
        takeChain(h);
        while (!backlog.isEmpty()) failQuietly(backlog.pollFirst());
        // 2. Cancel what is in flight and wait (bounded) for it.
        try {
            long deadline = System.nanoTime() + options.closeTimeout().toNanos();
            if (wakeArmed) UringSyscalls.write(eventFd, wakeValue, 8); // completes our own eventfd READ
            if (inflight() > 0) {
                Sqe c = ring.nextSqe();
                if (c != null) c.prepCancel(0, Sqe.CANCEL_ANY | Sqe.CANCEL_ALL).userData(CANCEL_UD);
            }
            while ((inflight() > 0 || wakeArmed) && System.nanoTime() < deadline) {
                if (carrying) {
                    runReady(); // carried threads see their failures and end
                    while (!backlog.isEmpty()) failQuietly(backlog.pollFirst());
                }
                if (!timeoutArmed) {
                    Sqe t = ring.nextSqe();
                    if (t != null) {
                        t.opcode(Opcode.TIMEOUT).fd(-1).addr(timeout.address()).len(1).userData(TIMEOUT_UD);
                        timeoutArmed = true;
                    }
                }
                ring.submitAndWait(1);
                ring.reap(this::dispatch);
            }
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.WARNING, "ring " + name + ": error while draining on close: " + t);
        }
        // 3. Whatever is still in flight will not complete through us.
        Set<UringOp> stuck = Collections.newSetFromMap(new IdentityHashMap<>());
        for (int i = 0; i < slotOp.length; i++) {
            if (slotOp[i] != null) stuck.add(slotOp[i]);
            slotOp[i] = null;
        }
        for (UringOp op : stuck) failQuietly(op, new RingClosedException("io_uring ring thread " + name
                + " closed with the operation still in flight"));
        ring.close();
        if (carrying) { // let the carried threads see their failures and end (new requests fail at once)
            while (hasReady() || !backlog.isEmpty()) {
                runReady();
                while (!backlog.isEmpty()) failQuietly(backlog.pollFirst());
                UringOp rest = (UringOp) INCOMING.getAndSet(this, CLOSED);
                takeChain(rest);
            }
            carrierDone = true;
            drainRemoteToPool();
        }
        eventFdClosed = true;
        while (wakers.get() > 0) Thread.onSpinWait();
        UringSyscalls.close(eventFd);
    }

    private void takeChain(UringOp h) {
        UringOp fifo = null;
        while (h != null && h != CLOSED) {
            UringOp n = h.next;
            h.next = fifo;
            fifo = h;
            h = n;
        }
        while (fifo != null) {
            UringOp n = fifo.next;
            fifo.next = null;
            backlog.addLast(fifo);
            fifo = n;
        }
    }

    private void failQuietly(UringOp op) {
        failQuietly(op, closedException());
    }

    private void failQuietly(UringOp op, IOException e) {
        try {
            op.fail(e);
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.WARNING, "failure handler of " + op + " threw: " + t);
        }
    }

    /**
     * Closes the ring: fails queued operations, cancels and waits (bounded) for in-flight ones, releases
     * the ring. Returns when the owner thread has finished (immediately when called on the owner thread;
     * the shutdown then happens as soon as the current handler returns).
     */
    @Override
    public void close() {
        closing = true;
        wake();
        if (isOwnerThread()) return;
        boolean interrupted = false;
        long waitMs = options.closeTimeout().toMillis() + 5_000;
        long end = System.currentTimeMillis() + waitMs;
        while (owner.isAlive()) {
            long left = end - System.currentTimeMillis();
            if (left <= 0) {
                LOG.log(System.Logger.Level.WARNING, "ring thread " + name + " did not stop in time");
                break;
            }
            try {
                owner.join(left);
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    @Override
    public String toString() {
        return "ring thread " + name;
    }
}
