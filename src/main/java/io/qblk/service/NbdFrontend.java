package io.qblk.service;

import io.qblk.util.Sizes;
import io.qblk.nbd.NbdServer;
import io.qblk.nbd.NbdTls;
import io.qblk.target.BlockTarget;
import io.quarkus.runtime.ShutdownEvent;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.event.Reception;
import jakarta.inject.Inject;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

/**
 * Serves devices as NBD exports. Devices that ask for the same listen address share one
 * {@link NbdServer} (one export each); the server closes when its last export goes.
 */
@ApplicationScoped
public class NbdFrontend implements Frontend {
    static final String DEFAULT_DEVICE = "default";

    @Inject QblkConfig config;

    private final Map<String, Listener> servers = new HashMap<>();
    private NbdTls tls;

    private record Listener(NbdServer server, InetSocketAddress bound) {}

    @Override
    public FrontendType type() { return FrontendType.NBD; }

    @Override
    public Optional<String> unavailableReason() { return Optional.empty(); }

    @Override
    public synchronized Attachment attach(DeviceSpec spec, BlockTarget target) throws IOException {
        String address = spec.nbdAddress();
        Listener l = servers.get(address);
        if (l == null) {
            int colon = address.lastIndexOf(':');
            String host = address.substring(0, colon).replaceAll("^\\[|\\]$", "");
            int port = Integer.parseInt(address.substring(colon + 1));
            NbdServer server = new NbdServer(options(host, Math.max(1, spec.depth())));
            try {
                l = new Listener(server, server.bindTcp(host, port));
            } catch (IOException e) {
                server.close();
                throw e;
            }
            servers.put(address, l);
        }
        Listener listener = l;
        try {
            listener.server().addExport(spec.name(), target, spec.readOnly(), "qblk device " + spec.name());
        } catch (IllegalArgumentException e) {
            throw new IOException(e.getMessage(), e);
        }
        // NBD's default export (the empty name, what nbd://host:port means) is the default device.
        if (DEFAULT_DEVICE.equals(spec.name())) listener.server().setDefaultExport(DEFAULT_DEVICE);
        String host = listener.bound().getHostString();
        if (host.contains(":")) host = "[" + host + "]";
        String endpoint = listener.server().scheme() + "://" + host + ":" + listener.bound().getPort() + "/" + spec.name();
        return new Attachment() {
            @Override public String endpoint() { return endpoint; }

            @Override
            public boolean alive() {
                return !listener.server().isClosed() && listener.server().export(spec.name()) != null;
            }

            @Override
            public void detach() {
                release(address, listener, spec.name());
            }
        };
    }

    /**
     * Server options for a listener on {@code host}: limits from {@code qblk.nbd.*}; a non-loopback
     * host must be listed in {@code qblk.nbd.allowed-addresses} and, unless
     * {@code qblk.nbd.tls.required=false}, needs TLS ({@code qblk.nbd.tls.dir}).
     */
    NbdServer.Options options(String host, int maxInFlight) throws IOException {
        QblkConfig.Nbd c = config.nbd();
        boolean loopback = isLoopback(host);
        if (!loopback && !c.allowedAddresses().orElse(List.of()).contains(host))
            throw ApiException.forbidden("NBD address '" + host + "' is not a loopback address; listening on it needs "
                    + "qblk.nbd.allowed-addresses to list it");
        NbdServer.Options o = NbdServer.Options.defaults().withMaxInFlight(maxInFlight)
                .withMaxConnections(c.maxConnections()).withHandshakeTimeout(c.handshakeTimeout());
        try {
            if (c.inFlightBytes().isPresent()) o = o.withInFlightBytes(Sizes.parse(c.inFlightBytes().get()));
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest("qblk.nbd.in-flight-bytes: " + e.getMessage());
        }
        boolean required = c.tls().required().orElse(!loopback);
        NbdTls t = tls();
        if (required && t == null)
            throw ApiException.forbidden("NBD address '" + host + "' requires TLS: set qblk.nbd.tls.dir (or qblk.nbd.tls.required=false)");
        return o.withTls(t, required);
    }

    private synchronized NbdTls tls() throws IOException {
        if (tls == null && config.nbd().tls().dir().isPresent())
            tls = loadTls(config.nbd().tls());
        return tls;
    }

    private static NbdTls loadTls(QblkConfig.Nbd.Tls c) throws IOException {
        List<String> protocols;
        try {
            protocols = c.protocols().isPresent() ? NbdTls.parseProtocols(c.protocols().get()) : NbdTls.defaultProtocols(c.verifyPeer());
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest("qblk.nbd.tls.protocols: " + e.getMessage());
        }
        return NbdTls.load(Path.of(c.dir().get()), c.verifyPeer(), protocols);
    }

    private static boolean isLoopback(String host) {
        try {
            for (InetAddress a : InetAddress.getAllByName(host)) if (!a.isLoopbackAddress()) return false;
            return true;
        } catch (UnknownHostException e) {
            return false;
        }
    }

    /** Listeners not accepting connections now, by address, with the reason (for readiness). */
    public synchronized Map<String, String> listenerProblems() {
        Map<String, String> out = new TreeMap<>();
        for (var e : servers.entrySet()) {
            e.getValue().server().listenerProblems().values().forEach(p -> out.put("nbd " + e.getKey(), p));
        }
        return out;
    }

    private void release(String address, Listener l, String name) {
        // Outside the lock: removeExport waits for the export's clients to finish their requests.
        l.server().removeExport(name);
        synchronized (this) {
            if (l.server().exportNames().isEmpty() && servers.get(address) == l) {
                servers.remove(address);
                l.server().close();
            }
        }
    }

    void onStop(@Observes(notifyObserver = Reception.IF_EXISTS) ShutdownEvent ev) {
        // DeviceManager detaches every export first; this closes listeners left behind.
        synchronized (this) {
            servers.values().forEach(l -> l.server().close());
            servers.clear();
        }
    }
}
