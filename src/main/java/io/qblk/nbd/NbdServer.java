package io.qblk.nbd;

import io.qblk.target.BlockTarget;
import io.qblk.uring.RingOptions;
import io.qblk.uring.RingThread;
import java.io.Closeable;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * An NBD server: listens on any number of TCP and unix-socket addresses and serves named exports
 * (fixed newstyle handshake, structured replies, {@code base:allocation} block status).
 *
 * <pre>{@code
 * try (NbdServer server = new NbdServer()) {
 *     InetSocketAddress a = server.bindTcp("127.0.0.1", 0);     // 0 = ephemeral port
 *     server.bindUnix(Path.of("/run/qblk/disk.sock"));
 *     server.addExport("disk", target, false);
 *     ...
 *     server.removeExport("disk");   // disconnects its clients once their requests are answered
 *     target.close();                // the caller owns the target
 * }
 * }</pre>
 *
 * Each connection has one virtual thread reading requests in order and one virtual thread per
 * request; at most {@code maxInFlight} requests per connection run at once (the reader stops
 * reading the socket while the limit is reached). With {@link Options#carrier()} those threads run
 * on a ring thread of the connection's own. Thread-safe.
 */
public final class NbdServer implements Closeable {
    private static final Logger LOG = Logger.getLogger(NbdServer.class.getName());
    public static final int DEFAULT_PORT = 10809;
    public static final int DEFAULT_MAX_IN_FLIGHT = 64;
    public static final int DEFAULT_MAX_CONNECTIONS = 1024;
    public static final Duration DEFAULT_HANDSHAKE_TIMEOUT = Duration.ofSeconds(10);
    /** Longest pause between accept attempts while the process is out of file descriptors. */
    static final long MAX_ACCEPT_BACKOFF_MS = 1000;

    /**
     * Limits and TLS of one server.
     *
     * @param maxInFlight requests one connection may have in progress at once
     * @param maxConnections connections (handshaking or serving) at once; more are closed right after accept
     * @param handshakeTimeout a client that has not finished option haggling (TLS included) by then is disconnected
     * @param inFlightBytes request and reply data all connections together may hold in memory
     *        (at least {@link NbdProtocol#MAX_PAYLOAD}); a connection over budget is not read further
     * @param inFlightBytesPerConnection the share one connection may hold (MAX_PAYLOAD .. inFlightBytes)
     * @param tls x509 credentials for NBD_OPT_STARTTLS, or null (STARTTLS answered unsupported)
     * @param tlsRequired refuse every option but STARTTLS (and ABORT) until TLS is up
     * @param carrier each connection that enters transmission gets a {@link RingThread} of its own that
     *        carries the connection's virtual threads (reader and requests; {@link io.qblk.uring.VirtualCarrier},
     *        the default scheduler where that is unavailable) and is bound as their
     *        {@link io.qblk.uring.CallerRing}: a target
     *        opened with {@code FileIo.CALLER_RING} then does its file I/O through that ring, so a
     *        request is served and answered on the connection's own thread (docs/performance.md,
     *        "NBD on a per-connection carrier")
     */
    public record Options(int maxInFlight, int maxConnections, Duration handshakeTimeout, long inFlightBytes,
                          long inFlightBytesPerConnection, NbdTls tls, boolean tlsRequired, boolean carrier) {
        public Options {
            if (maxInFlight < 1) throw new IllegalArgumentException("maxInFlight must be >= 1");
            if (maxConnections < 1) throw new IllegalArgumentException("maxConnections must be >= 1");
            if (handshakeTimeout == null || handshakeTimeout.isNegative() || handshakeTimeout.isZero())
                throw new IllegalArgumentException("handshake timeout must be positive");
            if (inFlightBytes < NbdProtocol.MAX_PAYLOAD)
                throw new IllegalArgumentException("in-flight budget must be at least " + NbdProtocol.MAX_PAYLOAD + " bytes");
            if (inFlightBytesPerConnection < NbdProtocol.MAX_PAYLOAD || inFlightBytesPerConnection > inFlightBytes)
                throw new IllegalArgumentException("per-connection in-flight budget must lie between "
                        + NbdProtocol.MAX_PAYLOAD + " bytes and the global budget");
            if (tlsRequired && tls == null) throw new IllegalArgumentException("TLS required but no TLS credentials given");
        }

        /** 64 requests per connection, 1024 connections, 10 s handshake, budget from the direct-memory limit, no TLS. */
        public static Options defaults() {
            long budget = defaultInFlightBytes();
            return new Options(DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_CONNECTIONS, DEFAULT_HANDSHAKE_TIMEOUT, budget,
                    defaultPerConnection(budget), null, false, false);
        }

        public Options withMaxInFlight(int n) {
            return new Options(n, maxConnections, handshakeTimeout, inFlightBytes, inFlightBytesPerConnection, tls, tlsRequired, carrier);
        }

        public Options withMaxConnections(int n) {
            return new Options(maxInFlight, n, handshakeTimeout, inFlightBytes, inFlightBytesPerConnection, tls, tlsRequired, carrier);
        }

        public Options withHandshakeTimeout(Duration d) {
            return new Options(maxInFlight, maxConnections, d, inFlightBytes, inFlightBytesPerConnection, tls, tlsRequired, carrier);
        }

        /** Sets the global budget; the per-connection share follows it (a quarter, 32..128 MiB). */
        public Options withInFlightBytes(long bytes) {
            return new Options(maxInFlight, maxConnections, handshakeTimeout, bytes, defaultPerConnection(bytes), tls, tlsRequired, carrier);
        }

        public Options withInFlightBytesPerConnection(long bytes) {
            return new Options(maxInFlight, maxConnections, handshakeTimeout, inFlightBytes, bytes, tls, tlsRequired, carrier);
        }

        public Options withTls(NbdTls t, boolean required) {
            return new Options(maxInFlight, maxConnections, handshakeTimeout, inFlightBytes, inFlightBytesPerConnection, t, required, carrier);
        }

        /** Whether each connection runs on a ring thread of its own (see {@code carrier} above). */
        public Options withCarrier(boolean on) {
            return new Options(maxInFlight, maxConnections, handshakeTimeout, inFlightBytes, inFlightBytesPerConnection, tls, tlsRequired, on);
        }

        /** Half the JVM's direct-memory limit, 64 MiB .. 1 GiB. */
        static long defaultInFlightBytes() {
            long direct = directMemoryLimit();
            return Math.clamp(direct / 2, 64L << 20, 1L << 30);
        }

        static long defaultPerConnection(long budget) {
            return Math.clamp(budget / 4, Math.min(budget, 32L << 20), Math.min(budget, 128L << 20));
        }

        private static long directMemoryLimit() {
            try {
                var bean = java.lang.management.ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class);
                long v = Long.parseLong(bean.getVMOption("MaxDirectMemorySize").getValue());
                if (v > 0) return v;
            } catch (RuntimeException | LinkageError ignored) {
                // not HotSpot: fall back to the heap limit, HotSpot's own default for direct memory
            }
            return Runtime.getRuntime().maxMemory();
        }
    }

    private final Options options;
    private final BufferPool buffers = new BufferPool();
    private final ByteBudget budget;
    private final ConcurrentHashMap<String, NbdExport> exports = new ConcurrentHashMap<>();
    private final Set<NbdConnection> connections = ConcurrentHashMap.newKeySet();
    private final AtomicInteger admitted = new AtomicInteger();
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final AtomicLong connectionIds = new AtomicLong();
    private final AtomicLong refusedConnections = new AtomicLong();
    private final RateLimitedLog refusedLog = new RateLimitedLog(LOG, Duration.ofSeconds(10));
    private final RateLimitedLog acceptErrorLog = new RateLimitedLog(LOG, Duration.ofSeconds(10));
    private final RateLimitedLog tlsFailureLog = new RateLimitedLog(LOG, Duration.ofSeconds(10));
    private final RateLimitedLog carrierFailureLog = new RateLimitedLog(LOG, Duration.ofSeconds(10));
    private final ScheduledExecutorService timer;
    private volatile String defaultExport;
    private volatile boolean closed;

    /** One listening socket; {@code accepting} is false while its acceptor backs off or after it stopped. */
    private static final class Listener {
        final ServerSocketChannel channel;
        final SocketAddress address;
        final Path socketFile;
        Thread acceptor;
        volatile boolean accepting = true;
        volatile String problem;

        Listener(ServerSocketChannel channel, SocketAddress address, Path socketFile) {
            this.channel = channel;
            this.address = address;
            this.socketFile = socketFile;
        }
    }

    public NbdServer() {
        this(Options.defaults());
    }

    /** @param maxInFlight requests one connection may have in progress at once (back-pressure limit) */
    public NbdServer(int maxInFlight) {
        this(Options.defaults().withMaxInFlight(maxInFlight));
    }

    public NbdServer(Options options) {
        this.options = options;
        this.budget = new ByteBudget(options.inFlightBytes(), options.inFlightBytesPerConnection());
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "nbd-handshake-timer");
            t.setDaemon(true);
            return t;
        });
        if (timer instanceof java.util.concurrent.ScheduledThreadPoolExecutor stpe) stpe.setRemoveOnCancelPolicy(true);
    }

    public Options options() {
        return options;
    }

    /** Listens on a TCP address; port 0 picks a free port. Returns the bound address. */
    public InetSocketAddress bindTcp(String host, int port) throws IOException {
        checkOpen();
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.INET);
        if (host.contains(":")) { ch.close(); ch = ServerSocketChannel.open(StandardProtocolFamily.INET6); }
        try {
            ch.setOption(java.net.StandardSocketOptions.SO_REUSEADDR, true);
            ch.bind(new InetSocketAddress(host, port), 128);
        } catch (IOException e) {
            ch.close();
            throw new IOException("cannot listen on " + host + ":" + port + ": " + e.getMessage(), e);
        }
        InetSocketAddress bound = (InetSocketAddress) ch.getLocalAddress();
        startListener(ch, bound, null);
        return bound;
    }

    /** Listens on a unix socket, replacing a stale socket file at {@code path}. */
    public UnixDomainSocketAddress bindUnix(Path path) throws IOException {
        checkOpen();
        if (Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            if (!"socket".equals(fileType(path))) throw new IOException(path + ": exists and is not a socket");
            Files.delete(path);
        }
        UnixDomainSocketAddress address = UnixDomainSocketAddress.of(path);
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.bind(address, 128);
        } catch (IOException e) {
            ch.close();
            throw new IOException("cannot listen on " + path + ": " + e.getMessage(), e);
        }
        startListener(ch, address, path);
        return address;
    }

    private static String fileType(Path p) {
        try {
            Object mode = Files.getAttribute(p, "unix:mode", java.nio.file.LinkOption.NOFOLLOW_LINKS);
            return (((Integer) mode) & 0170000) == 0140000 ? "socket" : "other";
        } catch (Exception e) {
            return "other";
        }
    }

    private void startListener(ServerSocketChannel ch, SocketAddress address, Path socketFile) {
        Listener l = new Listener(ch, address, socketFile);
        l.acceptor = Thread.ofVirtual().name("nbd-accept-" + address).unstarted(() -> acceptLoop(l));
        listeners.add(l);
        l.acceptor.start();
    }

    /**
     * Accepts until the listener closes. Nothing ends it early: a failing accept (EMFILE, ENFILE,
     * ENOBUFS, OutOfMemoryError) backs off 10 ms .. 1 s with one log line per episode; a connection
     * that cannot be set up (over the limit, out of memory) is closed and the loop goes on. Even a
     * failure of the logging itself (it may need a file descriptor too) only costs a back-off step.
     */
    private void acceptLoop(Listener l) {
        AcceptState st = new AcceptState();
        while (!closed && l.channel.isOpen()) {
            try {
                acceptOnce(l, st);
            } catch (ClosedChannelException e) {
                break;
            } catch (Throwable e) {
                if (closed || !l.channel.isOpen()) break;
                st.failures++;
                if (st.backoff == 0) {
                    l.problem = "accept failed: " + describe(e);
                    l.accepting = false;
                    warn("nbd " + l.address + ": " + l.problem + "; retrying with back-off, not accepting meanwhile");
                }
                st.backoff = st.backoff == 0 ? 10 : Math.min(MAX_ACCEPT_BACKOFF_MS, st.backoff * 2);
                try {
                    Thread.sleep(st.backoff);
                } catch (InterruptedException ie) {
                    if (closed) break;
                }
            }
        }
        l.accepting = false;
        if (!closed && l.problem == null) l.problem = "listener closed";
    }

    private static final class AcceptState {
        long backoff, failures;
    }

    private void acceptOnce(Listener l, AcceptState st) throws IOException {
        SocketChannel client = l.channel.accept();
        if (st.backoff != 0) {
            long n = st.failures;
            st.backoff = 0;
            st.failures = 0;
            l.problem = null;
            l.accepting = true;
            warn("nbd " + l.address + ": accepting again after " + n + " failed accepts");
        }
        try {
            admit(client);
        } catch (Throwable e) {
            closeQuietly(client);
            try {
                acceptErrorLog.log(Level.WARNING, n -> "nbd " + l.address + ": dropped a new connection: " + describe(e)
                        + (n > 0 ? " (" + n + " more since the last message)" : ""));
            } catch (Throwable ignored) {
                // logging failed as well (no memory, no descriptor): the connection is closed, go on
            }
        }
    }

    /** Logs a warning; a logging failure (out of descriptors or memory) is swallowed, the accept loop must go on. */
    private static void warn(String message) {
        try {
            LOG.warning(message);
        } catch (Throwable ignored) {
            // nothing sensible left to do
        }
    }

    private static String describe(Throwable e) {
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    /** Starts serving a freshly accepted socket, or closes it when the server is full or closing. */
    private void admit(SocketChannel client) {
        if (closed) { closeQuietly(client); return; }
        if (admitted.incrementAndGet() > options.maxConnections()) {
            admitted.decrementAndGet();
            closeQuietly(client);
            refusedConnections.incrementAndGet();
            refusedLog.log(Level.WARNING, n -> "nbd: connection limit " + options.maxConnections()
                    + " reached, closing new connections" + (n > 0 ? " (" + n + " more refused since the last message)" : ""));
            return;
        }
        NbdConnection c;
        try {
            c = new NbdConnection(this, client, connectionIds.incrementAndGet());
            connections.add(c);
        } catch (Throwable e) {
            admitted.decrementAndGet();
            throw e;
        }
        try {
            c.armHandshakeTimer(timer.schedule(c::handshakeTimedOut, options.handshakeTimeout().toMillis(), TimeUnit.MILLISECONDS));
            Thread.ofVirtual().name("nbd-conn-" + c.id()).start(c);
        } catch (Throwable e) {
            c.cancelHandshakeTimer();
            connectionClosed(c);
            throw e;
        }
    }

    /**
     * In carrier mode, the ring thread of connection {@code id}, started when its handshake is done (a
     * client that never gets that far costs no thread); null (the connection then stays on the default
     * scheduler, file I/O by syscalls) when no ring can be set up, with a rate-limited warning.
     */
    RingThread startCarrier(long id) {
        try {
            return RingThread.start("nbd-conn-" + id + "-ring", RingOptions.defaults().withCarrier(true));
        } catch (IOException | RuntimeException e) {
            carrierFailureLog.log(Level.WARNING, n -> "nbd connection " + id + ": no io_uring carrier (" + describe(e)
                    + "), serving it on the default scheduler" + (n > 0 ? " (" + n + " more since the last message)" : ""));
            return null;
        }
    }

    /** Adds an export; fails if the name is taken. {@code readOnly} (or a read-only target) refuses writes. */
    public void addExport(String name, BlockTarget target, boolean readOnly) {
        addExport(name, target, readOnly, "");
    }

    public void addExport(String name, BlockTarget target, boolean readOnly, String description) {
        checkOpen();
        NbdExport e = new NbdExport(name, target, readOnly, description);
        if (exports.putIfAbsent(name, e) != null) throw new IllegalArgumentException("export '" + name + "' already exists");
    }

    /**
     * Removes an export: new clients no longer see it; its connected clients get their in-flight
     * requests answered and are then disconnected. Returns when they are gone (the target may then
     * be flushed and closed). Returns false when no such export existed.
     */
    public boolean removeExport(String name) {
        NbdExport e = exports.remove(name);
        if (e == null) return false;
        List<NbdConnection> victims = new ArrayList<>();
        for (NbdConnection c : connections) if (c.export() == e) victims.add(c);
        for (NbdConnection c : victims) c.stop();
        for (NbdConnection c : victims) c.awaitClosed();
        return true;
    }

    public Set<String> exportNames() {
        return new TreeSet<>(exports.keySet());
    }

    public NbdExport export(String name) {
        return exports.get(name);
    }

    /** Addresses the server listens on (InetSocketAddress or UnixDomainSocketAddress). */
    public List<SocketAddress> addresses() {
        return listeners.stream().map(l -> l.address).toList();
    }

    /**
     * The URIs a client uses to reach {@code exportName} on each listener, e.g.
     * {@code nbd://127.0.0.1:10809/vm1} and {@code nbd+unix:///vm1?socket=/run/qblk/nbd.sock}
     * ({@code nbds://}, {@code nbds+unix://} when TLS is required).
     */
    public List<String> uris(String exportName) {
        String name = encodeName(exportName);
        List<String> out = new ArrayList<>();
        for (Listener l : listeners) {
            if (l.address instanceof InetSocketAddress a) {
                String host = a.getHostString().contains(":") ? "[" + a.getHostString() + "]" : a.getHostString();
                out.add(scheme() + "://" + host + ":" + a.getPort() + "/" + name);
            } else if (l.address instanceof UnixDomainSocketAddress u) {
                out.add(scheme() + "+unix:///" + name + "?socket=" + u.getPath());
            }
        }
        return out;
    }

    /** {@code nbds} (libnbd's scheme for TLS) when this server requires TLS, else {@code nbd}. */
    public String scheme() {
        return options.tlsRequired() ? "nbds" : "nbd";
    }

    private static String encodeName(String name) {
        StringBuilder b = new StringBuilder();
        for (byte x : name.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
            char c = (char) (x & 0xff);
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || "-._~".indexOf(c) >= 0) b.append(c);
            else b.append('%').append(String.format("%02X", x & 0xff));
        }
        return b.toString();
    }

    public int connectionCount() {
        return connections.size();
    }

    /** Connections closed right after accept because {@link Options#maxConnections()} was reached. */
    public long refusedConnections() {
        return refusedConnections.get();
    }

    /** Bytes of request and reply data held by in-flight requests now. */
    public long inFlightBytes() {
        return budget.used();
    }

    /**
     * Serves {@code name} to clients asking for the empty export name (NBD's default export), as
     * qemu-nbd and nbdkit do; null stops that. An export really named "" takes precedence.
     */
    public void setDefaultExport(String name) {
        defaultExport = name;
    }

    /**
     * Why listeners are not accepting, by address ({@code accept failed: ... Too many open files},
     * {@code listener closed}); empty while every listener accepts.
     */
    public java.util.Map<String, String> listenerProblems() {
        java.util.Map<String, String> out = new java.util.TreeMap<>();
        if (closed) return out;
        for (Listener l : listeners) {
            if (!l.accepting || !l.channel.isOpen()) out.put(String.valueOf(l.address), l.problem == null ? "not accepting" : l.problem);
        }
        return out;
    }

    /**
     * Stops listening, answers every in-flight request, disconnects all clients and removes unix
     * socket files. Does not close the targets.
     */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (Listener l : listeners) {
            closeQuietly(l.channel);
            if (l.socketFile != null) {
                try { Files.deleteIfExists(l.socketFile); } catch (IOException ignored) { }
            }
        }
        for (Listener l : listeners) {
            l.acceptor.interrupt(); // ends a back-off sleep
            try { l.acceptor.join(); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }
        List<NbdConnection> all = new ArrayList<>(connections);
        for (NbdConnection c : all) c.stop();
        for (NbdConnection c : all) c.awaitClosed();
        timer.shutdownNow();
    }

    public boolean isClosed() {
        return closed;
    }

    // --- package-private, for connections ---

    NbdExport lookup(String name) {
        NbdExport e = exports.get(name);
        if (e == null && name.isEmpty()) {
            String d = defaultExport;
            if (d != null) e = exports.get(d);
        }
        return e;
    }

    List<NbdExport> exportList() {
        return exports.values().stream().sorted(java.util.Comparator.comparing(NbdExport::name)).toList();
    }

    BufferPool buffers() {
        return buffers;
    }

    int maxInFlight() {
        return options.maxInFlight();
    }

    ByteBudget budget() {
        return budget;
    }

    RateLimitedLog tlsFailureLog() {
        return tlsFailureLog;
    }

    NbdTls tls() {
        return options.tls();
    }

    boolean tlsRequired() {
        return options.tlsRequired();
    }

    void connectionClosed(NbdConnection c) {
        if (connections.remove(c)) admitted.decrementAndGet();
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("NBD server is closed");
    }

    static void closeQuietly(java.io.Closeable c) {
        try { c.close(); } catch (IOException ignored) { }
    }
}
