package io.qblk.nbd;

import io.qblk.target.BlockTarget;
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
 * reading the socket while the limit is reached). Thread-safe.
 */
public final class NbdServer implements Closeable {
    private static final Logger LOG = Logger.getLogger(NbdServer.class.getName());
    public static final int DEFAULT_PORT = 10809;
    public static final int DEFAULT_MAX_IN_FLIGHT = 64;

    private final int maxInFlight;
    private final BufferPool buffers = new BufferPool();
    private final ConcurrentHashMap<String, NbdExport> exports = new ConcurrentHashMap<>();
    private final Set<NbdConnection> connections = ConcurrentHashMap.newKeySet();
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final AtomicLong connectionIds = new AtomicLong();
    private volatile boolean closed;

    private record Listener(ServerSocketChannel channel, SocketAddress address, Path socketFile, Thread acceptor) {}

    public NbdServer() {
        this(DEFAULT_MAX_IN_FLIGHT);
    }

    /** @param maxInFlight requests one connection may have in progress at once (back-pressure limit) */
    public NbdServer(int maxInFlight) {
        if (maxInFlight < 1) throw new IllegalArgumentException("maxInFlight must be >= 1");
        this.maxInFlight = maxInFlight;
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
        Thread t = Thread.ofVirtual().name("nbd-accept-" + address).unstarted(() -> acceptLoop(ch));
        listeners.add(new Listener(ch, address, socketFile, t));
        t.start();
    }

    private void acceptLoop(ServerSocketChannel ch) {
        while (!closed) {
            SocketChannel client;
            try {
                client = ch.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (closed || !ch.isOpen()) return;
                LOG.log(Level.WARNING, "nbd accept failed: " + e.getMessage());
                continue;
            }
            if (closed) { closeQuietly(client); return; }
            NbdConnection c = new NbdConnection(this, client, connectionIds.incrementAndGet());
            connections.add(c);
            Thread.ofVirtual().name("nbd-conn-" + c.id()).start(c);
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
        return listeners.stream().map(Listener::address).toList();
    }

    /**
     * The URIs a client uses to reach {@code exportName} on each listener, e.g.
     * {@code nbd://127.0.0.1:10809/vm1} and {@code nbd+unix:///vm1?socket=/run/qblk/nbd.sock}.
     */
    public List<String> uris(String exportName) {
        String name = encodeName(exportName);
        List<String> out = new ArrayList<>();
        for (Listener l : listeners) {
            if (l.address() instanceof InetSocketAddress a) {
                String host = a.getHostString().contains(":") ? "[" + a.getHostString() + "]" : a.getHostString();
                out.add("nbd://" + host + ":" + a.getPort() + "/" + name);
            } else if (l.address() instanceof UnixDomainSocketAddress u) {
                out.add("nbd+unix:///" + name + "?socket=" + u.getPath());
            }
        }
        return out;
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

    /**
     * Stops listening, answers every in-flight request, disconnects all clients and removes unix
     * socket files. Does not close the targets.
     */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (Listener l : listeners) {
            closeQuietly(l.channel());
            if (l.socketFile() != null) {
                try { Files.deleteIfExists(l.socketFile()); } catch (IOException ignored) { }
            }
        }
        for (Listener l : listeners) {
            try { l.acceptor().join(); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }
        List<NbdConnection> all = new ArrayList<>(connections);
        for (NbdConnection c : all) c.stop();
        for (NbdConnection c : all) c.awaitClosed();
    }

    public boolean isClosed() {
        return closed;
    }

    // --- package-private, for connections ---

    NbdExport lookup(String name) {
        return exports.get(name);
    }

    List<NbdExport> exportList() {
        return exports.values().stream().sorted(java.util.Comparator.comparing(NbdExport::name)).toList();
    }

    BufferPool buffers() {
        return buffers;
    }

    int maxInFlight() {
        return maxInFlight;
    }

    void connectionClosed(NbdConnection c) {
        connections.remove(c);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("NBD server is closed");
    }

    static void closeQuietly(java.io.Closeable c) {
        try { c.close(); } catch (IOException ignored) { }
    }
}
