package io.qblk.service;

import io.qblk.target.BlockTarget;
import io.qblk.ublk.UblkServer;
import jakarta.enterprise.context.ApplicationScoped;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Serves devices as /dev/ublkbN through {@link UblkServer}. Available when the kernel has ublk
 * ({@code /dev/ublk-control} exists) and the process may open it (root or CAP_SYS_ADMIN unless the
 * kernel allows unprivileged ublk). Detaching stops and deletes the kernel device.
 */
@ApplicationScoped
public class UblkFrontend implements Frontend {
    private static final org.jboss.logging.Logger LOG = org.jboss.logging.Logger.getLogger(UblkFrontend.class);
    static final Path CONTROL = Path.of("/dev/ublk-control");

    @Override
    public FrontendType type() { return FrontendType.UBLK; }

    @Override
    public Optional<String> unavailableReason() {
        if (!Files.exists(CONTROL)) return Optional.of(CONTROL + " does not exist (modprobe ublk_drv)");
        if (!Files.isReadable(CONTROL) || !Files.isWritable(CONTROL)) return Optional.of(CONTROL + ": permission denied");
        return Optional.empty();
    }

    @Override
    public Attachment attach(DeviceSpec spec, BlockTarget target) throws IOException {
        UblkServer.Options o = UblkServer.Options.defaults().withQueues(spec.queues()).withDepth(spec.depth());
        UblkServer server = UblkServer.start(target, o);
        String endpoint = server.blockDevice().toString();
        return new Attachment() {
            @Override public String endpoint() { return endpoint; }

            @Override
            public boolean alive() { return Files.exists(server.blockDevice()); }

            @Override
            public void detach() throws IOException {
                try {
                    server.stop();
                } finally {
                    LOG.infof("device %s: ublk device %d %s", spec.name(), server.devId(), server.servedSummary());
                }
            }
        };
    }
}
