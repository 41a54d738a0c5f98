package io.qblk.nbd;

import static io.qblk.nbd.NbdProtocol.*;

import io.qblk.target.TargetErrors;
import io.qblk.io.ErrnoException;
import io.qblk.io.LibC;
import io.qblk.target.BlockTarget;
import io.qblk.uring.CallerRing;
import io.qblk.uring.RingThread;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.locks.ReentrantLock;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One client connection: the fixed newstyle handshake, then the transmission phase.
 *
 * <p>The connection's own virtual thread reads requests in order. A request whose header is
 * invalid is answered right there with an error; a valid one takes a slot (at most
 * {@code maxInFlight}, the back-pressure limit), has its WRITE payload read into a pooled buffer,
 * and runs on its own virtual thread. Replies are written as requests complete, each reply as one
 * gathering write under {@link #writeLock}; the lock is never held across target I/O.
 */
final class NbdConnection implements Runnable {
    private static final Logger LOG = Logger.getLogger(NbdConnection.class.getName());
    /** Longest option payload read during the handshake; longer ones are skipped and refused. */
    private static final int MAX_OPTION_DATA = 64 << 10;
    /** Longest option payload skipped at all; beyond it the client is disconnected. */
    private static final long MAX_OPTION_SKIP = 16 << 20;
    /** An oversized WRITE payload up to this length is read and discarded (EINVAL); beyond it: disconnect. */
    private static final long MAX_WRITE_DISCARD = 2L * MAX_PAYLOAD;
    private static final int MAX_DESCRIPTORS = 1 << 16;
    /** Scratch buffer an oversized payload is read and dropped through. */
    private static final int SKIP_CHUNK = 1 << 20;

    private final NbdServer server;
    private final SocketChannel channel;
    private final long id;
    /**
     * Carrier mode: the connection's own ring thread, started after the handshake, which carries the
     * transmission phase's virtual threads (the reader's and the requests') and serves their file I/O
     * as their {@link CallerRing}; null: the default scheduler. Closed by the connection when it ends.
     */
    private RingThread carrier;
    /** Carrier mode: the duplicate socket descriptor the ring receives on ({@link SocketFd}), or -1. */
    private int ringFd = -1;
    private final ReentrantLock writeLock = new ReentrantLock();
    private final CountDownLatch closed = new CountDownLatch(1);
    private final ByteBudget.Account budgetAccount = new ByteBudget.Account();
    private volatile NbdExport export;
    private volatile boolean stopping;
    private volatile boolean handshakeDone;
    private volatile Future<?> handshakeTimer;
    /** Plain socket until NBD_OPT_STARTTLS, then TLS on top of it. */
    private volatile NbdTls.Transport io;

    // Negotiated during the handshake, read-only afterwards.
    private boolean noZeroes;
    private boolean structured;
    private String metaContextExport;
    /** Metadata contexts selected by NBD_OPT_SET_META_CONTEXT; context id = index + 1. */
    private List<String> contexts = List.of();

    private ArrayBlockingQueue<Slot> slots;
    /**
     * Read-ahead for the transmission phase: one socket read often brings several request headers
     * and small payloads. Borrowed from the pool when transmission starts (a socket that never
     * finishes the handshake holds no native buffer); null before that.
     */
    private BufferPool.Buffer inboxBuffer;
    private ByteBuffer inbox;
    private static final int INBOX_SIZE = 128 << 10;

    /** Per in-flight request: a reusable native buffer for reply headers. */
    private static final class Slot {
        final ByteBuffer header = ByteBuffer.allocateDirect(32);
    }

    /** Broken client input: the connection is dropped without a reply. */
    private static final class ProtocolViolation extends IOException {
        ProtocolViolation(String message) { super(message); }
    }

    NbdConnection(NbdServer server, SocketChannel channel, long id) {
        this.server = server;
        this.channel = channel;
        this.id = id;
        this.io = new NbdTls.PlainTransport(channel);
    }

    void armHandshakeTimer(Future<?> timer) {
        handshakeTimer = timer;
        if (handshakeDone) timer.cancel(false);
    }

    void cancelHandshakeTimer() {
        handshakeDone = true;
        Future<?> t = handshakeTimer;
        if (t != null) t.cancel(false);
    }

    /** The handshake timer fired: a client still haggling (or silent) is disconnected. */
    void handshakeTimedOut() {
        if (handshakeDone) return;
        LOG.fine(() -> "nbd connection " + id + ": handshake not finished in time, disconnecting");
        stopping = true;
        NbdServer.closeQuietly(channel);
    }

    long id() { return id; }

    NbdExport export() { return export; }

    /** Asks the connection to finish: no more requests are read; in-flight ones are answered. */
    void stop() {
        stopping = true;
        try {
            channel.shutdownInput();
        } catch (IOException ignored) {
            // already closed
        }
    }

    void awaitClosed() {
        uninterruptibly(closed::await);
    }

    private interface Wait {
        void run() throws InterruptedException;
    }

    /** Runs {@code w} to its end through interrupts, then restores the interrupt status it swallowed. */
    private static void uninterruptibly(Wait w) {
        boolean interrupted = false;
        while (true) {
            try {
                w.run();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    @Override
    public void run() {
        ExecutorService workers = null;
        try {
            if (channel.getRemoteAddress() instanceof InetSocketAddress) channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
            NbdExport e = handshake();
            cancelHandshakeTimer();
            if (e != null && !stopping) {
                if (server.options().carrier()) carrier = server.startCarrier(id);
                workers = Executors.newThreadPerTaskExecutor(requestThreads());
                if (carrier == null) transmission(e, workers);
                else transmissionOnCarrier(e, workers);
            }
        } catch (EOFException | ClosedChannelException ex) {
            LOG.fine(() -> "nbd connection " + id + ": client went away");
        } catch (IOException ex) {
            LOG.log(Level.FINE, "nbd connection " + id + ": " + ex.getMessage());
        } catch (RuntimeException | OutOfMemoryError ex) {
            LOG.log(Level.WARNING, "nbd connection " + id + " failed: " + ex);
        } finally {
            cancelHandshakeTimer();
            if (workers != null) workers.close(); // answers every request already read
            NbdServer.closeQuietly(channel);
            if (ringFd >= 0) LibC.close(ringFd);
            if (inboxBuffer != null) server.buffers().release(inboxBuffer);
            if (carrier != null) carrier.close();
            server.connectionClosed(this);
            closed.countDown();
        }
    }

    /** Runs the transmission phase on a virtual thread the connection's ring carries, and waits for it. */
    private void transmissionOnCarrier(NbdExport e, ExecutorService workers) throws IOException {
        Throwable[] failure = new Throwable[1];
        CallerRing binding = new CallerRing(carrier);
        Thread t = carrier.newThread("nbd-conn-" + id + "-tx", () -> binding.run(() -> {
            try {
                transmission(e, workers);
            } catch (Throwable x) {
                failure[0] = x;
            }
        }));
        t.start();
        uninterruptibly(t::join);
        switch (failure[0]) {
            case null -> { }
            case IOException io -> throw io;
            case RuntimeException re -> throw re;
            case Error err -> throw err;
            default -> throw new IOException(failure[0]);
        }
    }

    /** Request threads: on the default scheduler, or carried by the connection's ring with it bound as their caller ring. */
    private ThreadFactory requestThreads() {
        if (carrier == null) return Thread.ofVirtual().name("nbd-" + id + "-req-", 0).factory();
        CallerRing binding = new CallerRing(carrier);
        String name = "nbd-" + id + "-req";
        return task -> carrier.newThread(name, () -> binding.run(task));
    }

    // ------------------------------------------------------------------ handshake

    /** Runs option haggling; returns the chosen export, or null when the client aborted. */
    private NbdExport handshake() throws IOException {
        ByteBuffer hello = ByteBuffer.allocate(18);
        hello.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).flip();
        writeFully(hello);
        int clientFlags = readBuffer(4).getInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0)
            throw new ProtocolViolation("unknown client flags 0x" + Integer.toHexString(clientFlags));
        noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;

        while (true) {
            ByteBuffer h = readBuffer(16);
            long magic = h.getLong();
            int option = h.getInt();
            long length = h.getInt() & 0xffffffffL;
            if (magic != IHAVEOPT) throw new ProtocolViolation("bad option magic 0x" + Long.toHexString(magic));
            if (length > MAX_OPTION_DATA) {
                if (length > MAX_OPTION_SKIP) throw new ProtocolViolation("option data of " + length + " bytes");
                skip(length);
                optionError(option, REP_ERR_TOO_BIG, "option data too long");
                continue;
            }
            ByteBuffer data = readBuffer((int) length);
            if (stopping) {
                optionError(option, REP_ERR_SHUTDOWN, "server is shutting down");
                continue;
            }
            if (option == OPT_STARTTLS) {
                startTls(length);
                continue;
            }
            if (server.tlsRequired() && !io.tls() && option != OPT_ABORT) {
                // NBD_OPT_EXPORT_NAME has no error reply: the protocol says to disconnect.
                if (option == OPT_EXPORT_NAME) throw new ProtocolViolation("NBD_OPT_EXPORT_NAME before TLS on a TLS-only server");
                optionError(option, REP_ERR_TLS_REQD, "this server requires TLS: use NBD_OPT_STARTTLS");
                continue;
            }
            switch (option) {
                case OPT_EXPORT_NAME -> {
                    String name = utf8(data, data.remaining());
                    NbdExport e = server.lookup(name);
                    if (e == null) throw new ProtocolViolation("no export '" + name + "'");
                    ByteBuffer r = ByteBuffer.allocate(noZeroes ? 10 : 134);
                    r.putLong(e.size()).putShort((short) e.transmissionFlags(structured));
                    r.position(r.capacity()).flip();
                    writeFully(r);
                    return enter(e, name);
                }
                case OPT_ABORT -> {
                    try { optionReply(option, REP_ACK, null); } catch (IOException ignored) { }
                    return null;
                }
                case OPT_LIST -> {
                    if (length != 0) { optionError(option, REP_ERR_INVALID, "NBD_OPT_LIST takes no data"); continue; }
                    for (NbdExport e : server.exportList()) {
                        byte[] n = e.name().getBytes(StandardCharsets.UTF_8);
                        byte[] d = e.description().getBytes(StandardCharsets.UTF_8);
                        optionReply(option, REP_SERVER, ByteBuffer.allocate(4 + n.length + d.length).putInt(n.length).put(n).put(d).flip());
                    }
                    optionReply(option, REP_ACK, null);
                }
                case OPT_INFO, OPT_GO -> {
                    NbdExport e = info(option, data);
                    if (e != null && option == OPT_GO) return enter(e, e.name());
                }
                case OPT_STRUCTURED_REPLY -> {
                    if (length != 0) { optionError(option, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data"); continue; }
                    structured = true;
                    optionReply(option, REP_ACK, null);
                }
                case OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT -> metaContext(option, data);
                default -> optionError(option, REP_ERR_UNSUP, "option " + option + " is not supported");
            }
        }
    }

    /** NBD_OPT_STARTTLS: acknowledge, then run the TLS handshake; option haggling goes on over TLS. */
    private void startTls(long length) throws IOException {
        NbdTls tls = server.tls();
        if (tls == null) { optionError(OPT_STARTTLS, REP_ERR_UNSUP, "TLS is not configured on this server"); return; }
        if (io.tls()) { optionError(OPT_STARTTLS, REP_ERR_INVALID, "TLS is already active"); return; }
        if (length != 0) { optionError(OPT_STARTTLS, REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data"); return; }
        optionReply(OPT_STARTTLS, REP_ACK, null);
        try {
            io = tls.handshake(channel);
        } catch (javax.net.ssl.SSLException ex) {
            server.tlsFailureLog().log(Level.WARNING, n -> "nbd connection " + id + ": TLS handshake failed: " + ex.getMessage()
                    + (n > 0 ? " (" + n + " more since the last message)" : ""));
            throw new ProtocolViolation("TLS handshake failed: " + ex.getMessage());
        }
        // Whatever was negotiated in the clear does not carry over (the protocol asks to forget it).
        structured = false;
        metaContextExport = null;
        contexts = List.of();
        LOG.fine(() -> "nbd connection " + id + ": TLS established");
    }

    private NbdExport enter(NbdExport e, String name) {
        if (!name.equals(metaContextExport)) contexts = List.of();
        export = e;
        // removeExport may have run between lookup and now: it either sees this connection or we see the removal.
        if (server.lookup(e.name()) != e) stopping = true;
        LOG.fine(() -> "nbd connection " + id + ": serving '" + e.name() + "'");
        return e;
    }

    /** NBD_OPT_INFO / NBD_OPT_GO: describe the export; returns it on success, null after an error reply. */
    private NbdExport info(int option, ByteBuffer data) throws IOException {
        if (data.remaining() < 6) { optionError(option, REP_ERR_INVALID, "truncated NBD_OPT_INFO/GO data"); return null; }
        long nameLen = data.getInt() & 0xffffffffL;
        if (nameLen > data.remaining() - 2) { optionError(option, REP_ERR_INVALID, "export name length past option data"); return null; }
        String name = utf8(data, (int) nameLen);
        int n = data.getShort() & 0xffff;
        if (data.remaining() != 2 * n) { optionError(option, REP_ERR_INVALID, "information request count does not match option length"); return null; }
        boolean wantName = false, wantDescription = false;
        for (int i = 0; i < n; i++) {
            int t = data.getShort() & 0xffff;
            if (t == INFO_NAME) wantName = true;
            if (t == INFO_DESCRIPTION) wantDescription = true;
        }
        NbdExport e = server.lookup(name);
        if (e == null) { optionError(option, REP_ERR_UNKNOWN, "no export '" + name + "'"); return null; }
        optionReply(option, REP_INFO, ByteBuffer.allocate(12).putShort((short) INFO_EXPORT).putLong(e.size())
                .putShort((short) e.transmissionFlags(structured)).flip());
        optionReply(option, REP_INFO, ByteBuffer.allocate(14).putShort((short) INFO_BLOCK_SIZE)
                .putInt(MIN_BLOCK_SIZE).putInt(PREFERRED_BLOCK_SIZE).putInt(MAX_PAYLOAD).flip());
        if (wantName) {
            byte[] b = e.name().getBytes(StandardCharsets.UTF_8);
            optionReply(option, REP_INFO, ByteBuffer.allocate(2 + b.length).putShort((short) INFO_NAME).put(b).flip());
        }
        if (wantDescription && !e.description().isEmpty()) {
            byte[] b = e.description().getBytes(StandardCharsets.UTF_8);
            optionReply(option, REP_INFO, ByteBuffer.allocate(2 + b.length).putShort((short) INFO_DESCRIPTION).put(b).flip());
        }
        optionReply(option, REP_ACK, null);
        return e;
    }

    /**
     * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: {@code base:allocation} and the target's
     * {@link BlockTarget#metaContexts} ({@code qemu:allocation-depth}, {@code qemu:dirty-bitmap:NAME}).
     * A query names a context, or a namespace ({@code base:}, {@code qemu:}, {@code qemu:dirty-bitmap:})
     * standing for all of its contexts; LIST with no query lists them all.
     */
    private void metaContext(int option, ByteBuffer data) throws IOException {
        if (!structured) { optionError(option, REP_ERR_INVALID, "negotiate structured replies first"); return; }
        if (data.remaining() < 8) { optionError(option, REP_ERR_INVALID, "truncated meta context data"); return; }
        long nameLen = data.getInt() & 0xffffffffL;
        if (nameLen > data.remaining() - 4) { optionError(option, REP_ERR_INVALID, "export name length past option data"); return; }
        String name = utf8(data, (int) nameLen);
        long count = data.getInt() & 0xffffffffL;
        List<String> queries = new ArrayList<>();
        for (long i = 0; i < count; i++) {
            if (data.remaining() < 4) { optionError(option, REP_ERR_INVALID, "truncated meta context query"); return; }
            long qlen = data.getInt() & 0xffffffffL;
            if (qlen > data.remaining()) { optionError(option, REP_ERR_INVALID, "meta context query past option data"); return; }
            queries.add(utf8(data, (int) qlen));
        }
        if (data.hasRemaining()) { optionError(option, REP_ERR_INVALID, "trailing bytes after meta context queries"); return; }
        NbdExport e = server.lookup(name);
        if (e == null) { optionError(option, REP_ERR_UNKNOWN, "no export '" + name + "'"); return; }
        List<String> offered = new ArrayList<>(List.of(META_BASE_ALLOCATION));
        offered.addAll(e.target().metaContexts());
        List<String> matched = new ArrayList<>();
        for (String c : offered) {
            boolean match = option == OPT_LIST_META_CONTEXT && queries.isEmpty();
            for (String q : queries) match |= q.equals(c) || (q.endsWith(":") && c.startsWith(q));
            if (match) matched.add(c);
        }
        if (option == OPT_LIST_META_CONTEXT) {
            for (String c : matched) optionReply(option, REP_META_CONTEXT, metaContextReply(0, c));
        } else {
            metaContextExport = name;
            contexts = List.copyOf(matched);
            for (int i = 0; i < matched.size(); i++) optionReply(option, REP_META_CONTEXT, metaContextReply(i + 1, matched.get(i)));
        }
        optionReply(option, REP_ACK, null);
    }

    private static ByteBuffer metaContextReply(int contextId, String context) {
        byte[] n = context.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(4 + n.length).putInt(contextId).put(n).flip();
    }

    private void optionReply(int option, int type, ByteBuffer data) throws IOException {
        int len = data == null ? 0 : data.remaining();
        ByteBuffer h = ByteBuffer.allocate(20).putLong(OPTION_REPLY_MAGIC).putInt(option).putInt(type).putInt(len).flip();
        if (data == null) writeFully(h);
        else writeFully(h, data);
    }

    private void optionError(int option, int type, String message) throws IOException {
        optionReply(option, type, ByteBuffer.wrap(message.getBytes(StandardCharsets.UTF_8)));
    }

    // ------------------------------------------------------------------ transmission

    private void transmission(NbdExport e, ExecutorService workers) throws IOException {
        int maxInFlight = server.maxInFlight();
        slots = new ArrayBlockingQueue<>(maxInFlight);
        for (int i = 0; i < maxInFlight; i++) slots.add(new Slot());
        BufferPool pool = server.buffers();
        ByteBudget budget = server.budget();
        inboxBuffer = pool.acquire(INBOX_SIZE);
        inbox = inboxBuffer.byteBuffer().flip();
        if (carrier != null && !io.tls()) {
            ringFd = SocketFd.dup(channel);
            if (ringFd >= 0) io = new RingRecvTransport(channel, carrier, ringFd);
        }
        ByteBuffer header = ByteBuffer.allocateDirect(REQUEST_HEADER_SIZE);

        while (!stopping) {
            header.clear();
            if (!readFullyOrEof(header)) return; // clean end of stream between requests
            header.flip();
            int magic = header.getInt();
            int flags = header.getShort() & 0xffff;
            int type = header.getShort() & 0xffff;
            long cookie = header.getLong();
            long offset = header.getLong();
            long length = header.getInt() & 0xffffffffL;
            if (magic != REQUEST_MAGIC) throw new ProtocolViolation("bad request magic 0x" + Integer.toHexString(magic));
            if (type == CMD_DISC) return; // workers.close() in run() answers everything in flight first

            Slot slot = take(slots);
            // Memory this request will hold until its reply is written; waiting for it is the back-pressure.
            long reserved = reservation(type, flags, length);
            if (!reserve(budget, reserved)) { slots.add(slot); return; }
            BufferPool.Buffer payload = null;
            if (type == CMD_WRITE) {
                if (length > MAX_PAYLOAD) {
                    try {
                        if (length > MAX_WRITE_DISCARD) throw new ProtocolViolation("write payload of " + length + " bytes");
                        skip(length);
                        replyError(slot, cookie, type, EINVAL, "write length " + length + " exceeds the maximum payload " + MAX_PAYLOAD);
                    } finally {
                        budget.release(budgetAccount, reserved);
                        slots.add(slot);
                    }
                    continue;
                }
                if (length > 0) {
                    payload = pool.acquire((int) length);
                    try {
                        readFully(payload.byteBuffer()); // a client vanishing here leaves the image untouched
                    } catch (IOException ex) {
                        pool.release(payload);
                        budget.release(budgetAccount, reserved);
                        throw ex;
                    }
                }
            }
            int error = validate(e, type, flags, offset, length);
            if (error != 0) {
                pool.release(payload);
                try {
                    replyError(slot, cookie, type, error, errorMessage(e, type, flags, offset, length, error));
                } finally {
                    budget.release(budgetAccount, reserved);
                    slots.add(slot);
                }
                continue;
            }
            BufferPool.Buffer data = payload;
            try {
                workers.execute(() -> handle(e, slot, data, type, flags, cookie, offset, length, reserved));
            } catch (Throwable ex) { // no thread for it (out of memory): the request was never started
                pool.release(data);
                budget.release(budgetAccount, reserved);
                slots.add(slot);
                throw ex;
            }
        }
    }

    /**
     * Native bytes a request holds until its reply is sent: READ/WRITE data, the block status
     * descriptors, the scratch buffer an oversized WRITE is skipped through. Counted in whole
     * pool classes, as that is what the pool hands out.
     */
    private static long reservation(int type, int flags, long length) {
        return switch (type) {
            case CMD_READ, CMD_WRITE -> length == 0 ? 0 : length > MAX_PAYLOAD
                    ? (type == CMD_WRITE ? BufferPool.classBytes(SKIP_CHUNK) : 0) : BufferPool.classBytes((int) length);
            case CMD_BLOCK_STATUS -> BufferPool.classBytes(4 + 8 * ((flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_DESCRIPTORS));
            default -> 0;
        };
    }

    /** Waits until the budget has room for {@code n} bytes; false when the connection is stopping meanwhile. */
    private boolean reserve(ByteBudget budget, long n) throws IOException {
        try {
            return budget.acquire(budgetAccount, n, () -> stopping || !channel.isOpen());
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
    }

    private static Slot take(ArrayBlockingQueue<Slot> q) throws IOException {
        try {
            return q.take();
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
    }

    /** NBD error value for a request that must not run, or 0. */
    private int validate(NbdExport e, int type, int flags, long offset, long length) {
        if (type > CMD_BLOCK_STATUS || type == CMD_CACHE) return EINVAL;
        if ((flags & ~allowedFlags(type)) != 0) return EINVAL;
        boolean writes = type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES;
        if (writes && e.readOnly()) return EPERM;
        if (type == CMD_FLUSH) return 0;
        if (type == CMD_BLOCK_STATUS && contexts.isEmpty()) return EINVAL;
        if (type == CMD_READ && length > MAX_PAYLOAD) return EINVAL;
        if (type == CMD_BLOCK_STATUS && length == 0) return EINVAL;
        long size = e.size();
        if (offset < 0 || offset > size || length > size - offset)
            return type == CMD_WRITE || type == CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
        if (offset % MIN_BLOCK_SIZE != 0 || length % MIN_BLOCK_SIZE != 0) return EINVAL;
        return 0;
    }

    /** Command flags valid for a known command. */
    private int allowedFlags(int type) {
        return switch (type) {
            case CMD_READ -> CMD_FLAG_FUA | (structured ? CMD_FLAG_DF : 0);
            case CMD_WRITE, CMD_FLUSH, CMD_TRIM -> CMD_FLAG_FUA;
            case CMD_WRITE_ZEROES -> CMD_FLAG_FUA | CMD_FLAG_NO_HOLE;
            case CMD_BLOCK_STATUS -> CMD_FLAG_FUA | CMD_FLAG_REQ_ONE;
            default -> 0;
        };
    }

    private String errorMessage(NbdExport e, int type, int flags, long offset, long length, int error) {
        return switch (error) {
            case EPERM -> "export '" + e.name() + "' is read-only";
            case ENOSPC -> "write at " + offset + "+" + length + " past the end of the export (" + e.size() + " bytes)";
            default -> {
                if (type > CMD_BLOCK_STATUS || type == CMD_CACHE) yield "unknown command " + type;
                if (type == CMD_BLOCK_STATUS && contexts.isEmpty()) yield "no metadata context was negotiated";
                if ((flags & ~allowedFlags(type)) != 0) yield "invalid flags 0x" + Integer.toHexString(flags) + " for command " + type;
                if (type == CMD_BLOCK_STATUS && length == 0) yield "block status of length 0";
                if (type == CMD_READ && length > MAX_PAYLOAD) yield "read length " + length + " exceeds the maximum payload " + MAX_PAYLOAD;
                if (Long.compareUnsigned(offset, e.size()) > 0 || length > e.size() - offset)
                    yield "request " + offset + "+" + length + " past the end of the export (" + e.size() + " bytes)";
                if (offset % MIN_BLOCK_SIZE != 0 || length % MIN_BLOCK_SIZE != 0)
                    yield "request " + offset + "+" + length + " not aligned to " + MIN_BLOCK_SIZE + " bytes";
                yield "invalid request";
            }
        };
    }

    /** Runs one request on its own virtual thread and sends its reply. */
    private void handle(NbdExport e, Slot slot, BufferPool.Buffer payload, int type, int flags, long cookie, long offset, long length,
                        long reserved) {
        BlockTarget t = e.target();
        BufferPool.Buffer buf = payload;
        BufferPool pool = server.buffers();
        try {
            boolean fua = (flags & CMD_FLAG_FUA) != 0;
            switch (type) {
                case CMD_READ -> {
                    if (length == 0) { replyDone(slot, cookie); return; }
                    buf = pool.acquire((int) length);
                    t.read(offset, buf.segment());
                    replyRead(slot, cookie, offset, buf);
                }
                case CMD_WRITE -> {
                    if (length > 0) t.write(offset, buf.segment(), fua);
                    else if (fua) t.flush();
                    replyDone(slot, cookie);
                }
                case CMD_FLUSH -> {
                    t.flush();
                    replyDone(slot, cookie);
                }
                case CMD_TRIM -> {
                    if (length > 0) t.discard(offset, length);
                    if (fua) t.flush();
                    replyDone(slot, cookie);
                }
                case CMD_WRITE_ZEROES -> {
                    if (length > 0) t.writeZeroes(offset, length, (flags & CMD_FLAG_NO_HOLE) == 0);
                    if (fua) t.flush();
                    replyDone(slot, cookie);
                }
                case CMD_BLOCK_STATUS -> {
                    int max = (flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_DESCRIPTORS;
                    List<List<BlockTarget.Status>> answers = new ArrayList<>();
                    for (String c : contexts) answers.add(c.equals(META_BASE_ALLOCATION) ? baseAllocation(t.blockStatus(offset, length)) : t.contextStatus(c, offset, length));
                    for (int i = 0; i < answers.size(); i++) {
                        int cap = Math.max(1, Math.min(max, answers.get(i).size()));
                        buf = pool.acquire(4 + 8 * cap);
                        replyBlockStatus(slot, cookie, offset, length, i + 1, answers.get(i), max, buf, i == answers.size() - 1);
                        pool.release(buf);
                        buf = null;
                    }
                }
                default -> throw new IllegalStateException("unreachable command " + type);
            }
        } catch (Throwable ex) {
            int error = nbdError(ex);
            // The full message stays in the server's log: it may name host paths the client must not see.
            if (ex instanceof IOException) LOG.log(Level.FINE, "nbd connection " + id + ": " + commandName(type) + " failed: " + ex);
            else LOG.log(Level.WARNING, "nbd connection " + id + ": " + commandName(type) + " failed", ex);
            try {
                replyError(slot, cookie, type, error, commandName(type) + " at " + offset + "+" + length + " failed: " + errorName(error));
            } catch (IOException ignored) {
                // client gone: the reader sees it too
            }
        } finally {
            pool.release(buf);
            server.budget().release(budgetAccount, reserved);
            slots.add(slot);
        }
    }

    private static String commandName(int type) {
        return switch (type) {
            case CMD_READ -> "read";
            case CMD_WRITE -> "write";
            case CMD_FLUSH -> "flush";
            case CMD_TRIM -> "trim";
            case CMD_WRITE_ZEROES -> "write zeroes";
            case CMD_BLOCK_STATUS -> "block status";
            default -> "command " + type;
        };
    }

    /** What an NBD error value means, for the message sent with it (never the server-side detail). */
    private static String errorName(int error) {
        return switch (error) {
            case EPERM -> "operation not permitted";
            case ENOMEM -> "out of memory";
            case EINVAL -> "invalid argument";
            case ENOSPC -> "no space left";
            case EOVERFLOW -> "value too large";
            case ENOTSUP -> "not supported";
            case ESHUTDOWN -> "server shutting down";
            default -> "input/output error";
        };
    }

    static int nbdError(Throwable ex) {
        return NbdProtocol.errorCode(TargetErrors.toErrno(ex));
    }

    // ------------------------------------------------------------------ replies

    private void replyDone(Slot slot, long cookie) throws IOException {
        ByteBuffer h = slot.header.clear();
        if (structured) h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_NONE).putLong(cookie).putInt(0);
        else h.putInt(SIMPLE_REPLY_MAGIC).putInt(0).putLong(cookie);
        send(h.flip());
    }

    private void replyRead(Slot slot, long cookie, long offset, BufferPool.Buffer data) throws IOException {
        ByteBuffer h = slot.header.clear();
        if (structured) {
            h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_OFFSET_DATA)
                    .putLong(cookie).putInt(8 + data.length()).putLong(offset);
        } else {
            h.putInt(SIMPLE_REPLY_MAGIC).putInt(0).putLong(cookie);
        }
        send(h.flip(), data.byteBuffer());
    }

    /** base:allocation's flags (hole, zero) of each extent. */
    private static List<BlockTarget.Status> baseAllocation(List<BlockTarget.Extent> extents) {
        List<BlockTarget.Status> out = new ArrayList<>(extents.size());
        for (BlockTarget.Extent x : extents) out.add(new BlockTarget.Status(x.offset(), x.length(), (x.hole() ? STATE_HOLE : 0) | (x.zero() ? STATE_ZERO : 0)));
        return out;
    }

    /** One block status chunk for context {@code contextId}; {@code last} sets the DONE flag. */
    private void replyBlockStatus(Slot slot, long cookie, long offset, long length, int contextId, List<BlockTarget.Status> runs,
                                  int max, BufferPool.Buffer buf, boolean last) throws IOException {
        ByteBuffer p = buf.byteBuffer();
        p.putInt(contextId);
        long pos = offset, end = offset + length;
        int n = 0, lastFlags = -1;
        for (BlockTarget.Status x : runs) {
            if (x.offset() > pos) break;                 // a gap: report what is known so far
            long xe = Math.min(x.offset() + x.length(), end);
            if (xe <= pos) continue;
            int f = x.flags();
            if (n > 0 && f == lastFlags) {
                int at = p.position() - 8;
                p.putInt(at, (int) (Integer.toUnsignedLong(p.getInt(at)) + (xe - pos)));
            } else {
                if (n == max || p.remaining() < 8) break;
                p.putInt((int) (xe - pos)).putInt(f);
                n++;
                lastFlags = f;
            }
            pos = xe;
            if (pos >= end) break;
        }
        if (n == 0) p.putInt((int) length).putInt(0);  // unknown: "allocated, contents unknown" is always safe
        p.flip();
        ByteBuffer h = slot.header.clear();
        h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) (last ? REPLY_FLAG_DONE : 0)).putShort((short) REPLY_TYPE_BLOCK_STATUS)
                .putLong(cookie).putInt(p.remaining());
        send(h.flip(), p);
    }

    private void replyError(Slot slot, long cookie, int type, int error, String message) throws IOException {
        if (structured) {
            byte[] m = message.getBytes(StandardCharsets.UTF_8);
            int ml = Math.min(m.length, 4096);
            ByteBuffer b = ByteBuffer.allocate(STRUCTURED_REPLY_HEADER_SIZE + 6 + ml);
            b.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_ERROR)
                    .putLong(cookie).putInt(6 + ml).putInt(error).putShort((short) ml).put(m, 0, ml).flip();
            send(b);
        } else {
            ByteBuffer h = slot.header.clear();
            h.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie);
            send(h.flip());
        }
    }

    /** Writes one whole reply; replies of concurrent requests never interleave. */
    private void send(ByteBuffer... parts) throws IOException {
        writeLock.lock();
        try {
            writeFully(parts);
        } catch (IOException ex) {
            stop();
            throw ex;
        } finally {
            writeLock.unlock();
        }
    }

    // ------------------------------------------------------------------ socket helpers

    private void writeFully(ByteBuffer... parts) throws IOException {
        long left = 0;
        for (ByteBuffer b : parts) left += b.remaining();
        NbdTls.Transport t = io;
        while (left > 0) left -= t.write(parts);
    }

    private ByteBuffer readBuffer(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        readFully(b);
        return b.flip();
    }

    private void readFully(ByteBuffer b) throws IOException {
        if (!fill(b)) throw new EOFException("client closed the connection mid-message");
    }

    /** Reads a whole message; false on end of stream before its first byte. */
    private boolean readFullyOrEof(ByteBuffer b) throws IOException {
        return fill(b);
    }

    /**
     * Fills {@code dst} from the read-ahead buffer, then the socket: small reads go through the
     * read-ahead buffer, large payloads straight into {@code dst}. False on end of stream before
     * the first byte; EOFException on end of stream after it.
     */
    private boolean fill(ByteBuffer dst) throws IOException {
        boolean started = false;
        while (dst.hasRemaining()) {
            if (inbox != null && inbox.hasRemaining()) {
                int n = Math.min(inbox.remaining(), dst.remaining());
                int limit = inbox.limit();
                dst.put(inbox.limit(inbox.position() + n));
                inbox.limit(limit);
                started = true;
                continue;
            }
            int r;
            if (inbox == null || dst.remaining() >= INBOX_SIZE / 2) {
                r = io.read(dst);
            } else {
                inbox.clear();
                r = io.read(inbox);
                inbox.flip();
            }
            if (r < 0) {
                if (!started) return false;
                throw new EOFException("client closed the connection mid-message");
            }
            if (r > 0) started = true;
        }
        return true;
    }

    /**
     * Reads and drops {@code n} bytes: in transmission through a pooled scratch buffer (the caller
     * reserved it in the budget), during the handshake through a small heap buffer, so a client
     * that never gets past the handshake holds no native memory.
     */
    private void skip(long n) throws IOException {
        BufferPool pool = server.buffers();
        BufferPool.Buffer scratch = inbox == null ? null : pool.acquire(SKIP_CHUNK);
        ByteBuffer small = scratch == null ? ByteBuffer.allocate(16 << 10) : null;
        try {
            while (n > 0) {
                ByteBuffer b = scratch != null ? scratch.byteBuffer() : small.clear();
                if (n < b.remaining()) b.limit((int) n);
                readFully(b);
                n -= b.position();
            }
        } finally {
            pool.release(scratch);
        }
    }

    private static String utf8(ByteBuffer b, int n) {
        byte[] a = new byte[n];
        b.get(a);
        return new String(a, StandardCharsets.UTF_8);
    }
}
