package io.qblk.service;

import io.micrometer.core.instrument.MeterRegistry;
import io.qblk.io.ImageLock;
import io.qblk.target.BlockTarget;
import io.qblk.target.ImageFormat;
import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import jakarta.enterprise.inject.Any;
import jakarta.enterprise.inject.Instance;
import jakarta.inject.Inject;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import org.eclipse.microprofile.config.ConfigProvider;
import org.jboss.logging.Logger;

/**
 * The devices this service runs: opens targets, wraps them in {@link MeteredTarget}, attaches them to
 * a {@link Frontend}, and tears them down (drain, flush, close) on delete and at shutdown.
 *
 * <pre>
 *   config / POST /devices ──► DeviceSpec ──► ImageService.open ──► MeteredTarget ──► Frontend.attach
 *                                                (qcow2|raw|null)     (metrics, drain)    (nbd | ublk)
 * </pre>
 */
@ApplicationScoped
public class DeviceManager {
    private static final Logger LOG = Logger.getLogger(DeviceManager.class);
    static final long DRAIN_MILLIS = 30_000;
    public static final long DEFAULT_IMAGE_SIZE = 8L << 30;

    @Inject QblkConfig config;
    @Inject ImagePaths paths;
    @Inject ImageService images;
    @Inject MeterRegistry registry;
    @Inject @Any Instance<Frontend> frontends;

    private final Map<String, Device> devices = new ConcurrentHashMap<>();
    private final ReentrantLock lock = new ReentrantLock();
    private volatile boolean stopped;

    /** One running (or failed) device. */
    static final class Device {
        final DeviceSpec spec;
        volatile MeteredTarget target;
        /** Frontends the device is served through; the first is spec.frontend(). */
        final List<FrontendType> frontends;
        volatile List<Frontend.Attachment> attachments = List.of();
        volatile String error;

        Device(DeviceSpec spec, List<FrontendType> frontends) {
            this.spec = spec;
            this.frontends = List.copyOf(frontends);
        }

        boolean running() { return target != null && !attachments.isEmpty(); }
    }

    /** True for {@code serve}, dev mode and tests; false for one-shot CLI commands (HTTP disabled there). */
    public static boolean serving() {
        return ConfigProvider.getConfig().getOptionalValue("quarkus.http.host-enabled", Boolean.class).orElse(true);
    }

    /** Only while serving: one-shot CLI commands must not touch devices or create directories. */
    @jakarta.inject.Singleton
    static class Startup {
        @Inject DeviceManager devices;

        void onStart(@Observes StartupEvent ev) {
            if (serving()) devices.startConfigured();
        }
    }

    void onStop(@Observes(notifyObserver = jakarta.enterprise.event.Reception.IF_EXISTS) ShutdownEvent ev) {
        stopAll();
    }

    @PreDestroy
    void destroy() {
        stopAll();
    }

    /** Starts every configured device, or the embedded default when none is configured. */
    void startConfigured() {
        List<DeviceSpec> specs = new ArrayList<>();
        List<String> problems = new ArrayList<>();
        String defaultAddress = config.nbd().address();
        for (DeviceSpecs.Draft d : DeviceSpecs.drafts(config.devices())) {
            try {
                specs.add(DeviceSpecs.build(d, "qblk.devices." + d.name() + ".", defaultAddress,
                        s -> Path.of(s).toAbsolutePath().normalize()));
            } catch (DeviceSpecs.Invalid e) {
                e.errors().forEach(fe -> problems.add(fe.field() + ": " + fe.message()));
            }
        }
        if (!problems.isEmpty())
            throw new io.smallrye.config.ConfigValidationException(problems.stream()
                    .map(io.smallrye.config.ConfigValidationException.Problem::new)
                    .toArray(io.smallrye.config.ConfigValidationException.Problem[]::new));
        if (specs.isEmpty()) {
            try {
                startDefault(defaultAddress);
            } catch (ApiException e) {
                throw startFailure("default device (no qblk.devices configured): " + e.detail());
            }
            return;
        }
        for (DeviceSpec s : specs) {
            try {
                add(s);
            } catch (ApiException e) {
                throw startFailure("qblk.devices." + s.name() + ": " + e.detail());
            }
        }
    }

    /** Printed by Quarkus as one clean line per problem, without a stack trace. */
    private static RuntimeException startFailure(String problem) {
        return new io.smallrye.config.ConfigValidationException(new io.smallrye.config.ConfigValidationException.Problem[]{
                new io.smallrye.config.ConfigValidationException.Problem(problem)});
    }

    private void startDefault(String address) {
        Path image = paths.allowedDirs().getFirst().resolve("default.qcow2");
        DeviceSpec nbd = new DeviceSpec("default", image, ImageFormat.QCOW2, FrontendType.NBD, 1, 128, false, address, DEFAULT_IMAGE_SIZE, null);
        boolean ublkToo = false;
        String noUblk = null;
        Optional<Frontend> ublk = frontend(FrontendType.UBLK);
        if (!Files.exists(Path.of("/dev/ublk-control"))) noUblk = "/dev/ublk-control does not exist (modprobe ublk_drv)";
        else if (ublk.isEmpty()) noUblk = "this build has no ublk frontend";
        else if (ublk.get().unavailableReason().isPresent()) noUblk = ublk.get().unavailableReason().get();
        else ublkToo = true;
        DeviceInfo info = add(nbd, ublkToo ? List.of(FrontendType.NBD, FrontendType.UBLK) : List.of(FrontendType.NBD));
        if (noUblk != null) LOG.infof("default device: not exported over ublk: %s", noUblk);
        else LOG.infof("default device: also served as %s", info.endpoints().get(1));
        LOG.infof("""
                default device: %s served over NBD at %s
                  qemu-io:    qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' %s
                  nbd-client: nbd-client %s %s /dev/nbd0 -N default   (needs modprobe nbd)
                  fio:        fio --name=t --ioengine=nbd --uri=%s --rw=randrw --bs=4k --iodepth=16 --size=1G""",
                image, info.endpoint(), info.endpoint(), host(info.endpoint()), port(info.endpoint()), info.endpoint());
    }

    // nbd:// or nbds:// (TLS): the scheme is not assumed.
    private static String host(String nbdUri) {
        return java.net.URI.create(nbdUri).getHost();
    }

    private static String port(String nbdUri) {
        return String.valueOf(java.net.URI.create(nbdUri).getPort());
    }

    Optional<Frontend> frontend(FrontendType type) {
        return frontends.stream().filter(f -> f.type() == type).findFirst();
    }

    public List<DeviceInfo> list() {
        return devices.values().stream().map(this::info).sorted(Comparator.comparing(DeviceInfo::name)).toList();
    }

    public DeviceInfo get(String name) {
        return info(device(name));
    }

    private Device device(String name) {
        Device d = devices.get(name);
        if (d == null) throw ApiException.notFound("no device named '" + name + "'");
        return d;
    }

    public DeviceInfo add(DeviceSpec spec) {
        return add(spec, List.of(spec.frontend()));
    }

    DeviceInfo add(DeviceSpec spec, List<FrontendType> frontendTypes) {
        lock.lock();
        try {
            if (stopped) throw ApiException.unavailable("the service is shutting down");
            if (devices.containsKey(spec.name())) throw ApiException.conflict("device '" + spec.name() + "' already exists");
            if (spec.image() != null) {
                for (Device other : devices.values()) {
                    if (ImageLock.sameFile(spec.image(), other.spec.image()))
                        throw ApiException.conflict(spec.image() + " is already served by device '" + other.spec.name() + "'"
                                + (spec.image().equals(other.spec.image()) ? "" : " (as " + other.spec.image() + ", the same file)"));
                }
            }
            Device d = new Device(spec, frontendTypes);
            start(d);
            devices.put(spec.name(), d);
            LOG.infof("device %s: %s %s served at %s", spec.name(), spec.target().id(),
                    spec.image() == null ? "(no image)" : spec.image(), endpoints(d));
            return info(d);
        } finally {
            lock.unlock();
        }
    }

    private Frontend usableFrontend(FrontendType type) {
        Frontend f = frontend(type).orElseThrow(() ->
                ApiException.unavailable("frontend " + type.id() + " is not available in this build"));
        f.unavailableReason().ifPresent(r -> {
            throw ApiException.unavailable("frontend " + type.id() + " is not available: " + r);
        });
        return f;
    }

    private static String endpoints(Device d) {
        return String.join(", ", d.attachments.stream().map(Frontend.Attachment::endpoint).toList());
    }

    private void start(Device d) {
        start(d, false);
    }

    /** Opens the device's target ({@code recovering}: checked and repaired first) and attaches its frontends. */
    private void start(Device d, boolean recovering) {
        List<Frontend> fronts = d.frontends.stream().map(this::usableFrontend).toList();
        BlockTarget raw;
        try {
            raw = ImageLock.heldBy("device '" + d.spec.name() + "'",
                    () -> images.open(d.spec, recovering, line -> LOG.infof("device %s: %s", d.spec.name(), line)));
        } catch (ApiException e) {
            throw e;
        } catch (IOException e) {
            throw imageError(d.spec, e);
        }
        MeteredTarget target = new MeteredTarget(d.spec.name(), raw, registry);
        if (!d.spec.readOnly() && raw.writeRefusal() != null)
            LOG.warnf("device %s: served read-only: %s", d.spec.name(), raw.writeRefusal());
        List<Frontend.Attachment> done = new ArrayList<>();
        try {
            for (Frontend f : fronts) done.add(f.attach(d.spec, target));
            d.attachments = List.copyOf(done);
            d.target = target;
            d.error = null;
        } catch (IOException | RuntimeException e) {
            for (Frontend.Attachment a : done) {
                try { a.detach(); } catch (IOException | RuntimeException x) { LOG.warnf("device %s: detach: %s", d.spec.name(), message(x)); }
            }
            target.removeMeters();
            closeQuietly(raw, d.spec.name());
            if (e instanceof ApiException ae) throw ae;
            throw ApiException.conflict("device '" + d.spec.name() + "': " + d.spec.frontend().id() + " frontend failed: " + message(e));
        }
    }

    private static ApiException imageError(DeviceSpec spec, IOException e) {
        String what = spec.image() == null ? "target" : spec.image().toString();
        if (e instanceof java.nio.file.NoSuchFileException nf) {
            // The engine names the missing file as the whole message: say what it is.
            String file = nf.getFile() == null || nf.getFile().equals(what) ? "" : " (" + nf.getFile() + ")";
            return ApiException.notFound(what + ": no such file or directory" + file);
        }
        ApiException a = ApiException.fromIo(e, 409, "Conflict");
        String m = message(e);
        // an in-use refusal already names the file and its holder
        String detail = m.startsWith(what) || e instanceof ImageLock.InUseException ? m
                : a.status() == 409 && !(e instanceof io.qblk.qcow2.Qcow2Exception)
                ? "cannot open " + what + ": " + m : what + ": " + m;
        return new ApiException(a.status(), a.title(), detail);
    }

    static String message(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }

    public void remove(String name) {
        lock.lock();
        try {
            Device d = device(name);
            String err = stop(d);
            devices.remove(name);
            if (err != null) throw ApiException.conflict("device '" + name + "' removed, but: " + err);
            LOG.infof("device %s: removed", name);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Restarts a device: detaches it, closes (or abandons) its target, reopens the image — the engine
     * repairs what an unclean stop left — and attaches it again with the same definition.
     */
    public DeviceInfo recover(String name) {
        lock.lock();
        try {
            Device d = device(name);
            String err = stop(d);
            if (err != null) LOG.warnf("device %s: while stopping for recovery: %s", name, err);
            try {
                start(d, true);
            } catch (ApiException e) {
                d.error = e.detail();
                throw e;
            }
            LOG.infof("device %s: recovered, served at %s", name, endpoints(d));
            return info(d);
        } finally {
            lock.unlock();
        }
    }

    /** Stops I/O, drains, flushes and closes; returns the first problem or null. */
    private String stop(Device d) {
        String err = null;
        MeteredTarget t = d.target;
        if (t != null) t.refuseNew();
        for (Frontend.Attachment a : d.attachments) {
            try {
                a.detach();
            } catch (IOException | RuntimeException e) {
                if (err == null) err = "detach: " + message(e);
            }
        }
        if (t != null) {
            try {
                if (!t.drain(DRAIN_MILLIS) && err == null) err = "requests still in flight after " + DRAIN_MILLIS + " ms";
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (!t.readOnly()) {
                try {
                    t.inner().flush();
                } catch (IOException | RuntimeException e) {
                    if (err == null) err = "flush: " + message(e);
                }
            }
            try {
                t.inner().close();
            } catch (IOException | RuntimeException e) {
                if (err == null) err = "close: " + message(e);
            }
            t.removeMeters();
        }
        d.target = null;
        d.attachments = List.of();
        if (err != null) d.error = err;
        return err;
    }

    /** Graceful shutdown: every device stops accepting I/O, drains, flushes and closes. */
    public void stopAll() {
        lock.lock();
        try {
            if (stopped) return;
            stopped = true;
            for (Device d : List.copyOf(devices.values())) {
                String err = stop(d);
                if (err != null) LOG.errorf("device %s: unclean stop: %s", d.spec.name(), err);
                else LOG.infof("device %s: flushed and closed", d.spec.name());
            }
            devices.clear();
        } finally {
            lock.unlock();
        }
    }

    /** The device serving {@code image} (under any name of the file), or null. */
    public String servedBy(Path image) {
        for (Device d : devices.values()) if (ImageLock.sameFile(image, d.spec.image())) return d.spec.name();
        return null;
    }

    /** Flushes the device serving {@code image} (if any) so its metadata on disk is current. */
    public void flushIfServed(Path image) throws IOException {
        for (Device d : devices.values()) {
            MeteredTarget t = d.target;
            if (t != null && ImageLock.sameFile(image, d.spec.image()) && !t.readOnly()) t.flush();
        }
    }

    /** Readiness of each device: null when healthy, otherwise why not. */
    public Map<String, String> problems() {
        Map<String, String> out = new java.util.TreeMap<>();
        for (Device d : devices.values()) {
            String p = null;
            if (!d.running()) p = d.error == null ? "not running" : d.error;
            else if (d.attachments.stream().anyMatch(a -> !a.alive())) p = "a frontend stopped serving (" + endpoints(d) + ")";
            else if (d.spec.image() != null && !Files.exists(d.spec.image())) p = "backing file " + d.spec.image() + " is gone";
            out.put(d.spec.name(), p == null ? "UP" : p);
        }
        return out;
    }

    private DeviceInfo info(Device d) {
        MeteredTarget t = d.target;
        List<String> eps = d.attachments.stream().map(Frontend.Attachment::endpoint).toList();
        String state = d.running() ? "running" : "failed";
        DeviceSpec s = d.spec;
        String refusal = s.readOnly() || t == null ? null : t.writeRefusal();
        String readOnlyReason = s.readOnly() ? "read-only by request" : refusal;
        return new DeviceInfo(s.name(), state, s.image() == null ? null : s.image().toString(), s.target().id(), s.frontend(),
                eps.isEmpty() ? null : eps.getFirst(), eps, t == null ? 0 : t.size(), readOnlyReason != null, s.queues(), s.depth(),
                t == null ? 0 : t.inflight(), d.error, readOnlyReason);
    }

    private static void closeQuietly(BlockTarget t, String name) {
        try {
            t.close();
        } catch (IOException | RuntimeException e) {
            LOG.warnf("device %s: close after failed start: %s", name, message(e));
        }
    }
}
