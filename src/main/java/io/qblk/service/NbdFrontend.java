package io.qblk.service;

import io.qblk.nbd.NbdServer;
import io.qblk.target.BlockTarget;
import io.quarkus.runtime.ShutdownEvent;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.event.Reception;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * Serves devices as NBD exports. Devices that ask for the same listen address share one
 * {@link NbdServer} (one export each); the server closes when its last export goes.
 */
@ApplicationScoped
public class NbdFrontend implements Frontend {
    private final Map<String, Listener> servers = new HashMap<>();

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
            NbdServer server = new NbdServer(Math.max(1, spec.depth()));
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
        String host = listener.bound().getHostString();
        if (host.contains(":")) host = "[" + host + "]";
        String endpoint = "nbd://" + host + ":" + listener.bound().getPort() + "/" + spec.name();
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
