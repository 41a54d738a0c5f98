package io.qblk.cli;

import io.qblk.io.CacheMode;
import io.qblk.util.Sizes;
import io.qblk.nbd.NbdServer;
import io.qblk.nbd.NbdTls;
import io.qblk.qcow2.DiscardMode;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.target.BlockTarget;
import io.qblk.target.FileIo;
import io.qblk.target.ImageFormat;
import io.qblk.target.TargetOpener;
import io.qblk.target.TargetOptions;
import io.qblk.ublk.UblkExport;
import io.qblk.ublk.UblkServer;
import io.qblk.ublk.UblkUnavailableException;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.Map;
import java.util.Stack;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.regex.Pattern;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code qblk export}: serves one image in the foreground until SIGTERM/Ctrl-C (like qemu-nbd),
 * then flushes and closes it. The frontend is a choice ({@code --nbd} today, {@code --ublk} next);
 * opening the image is {@link TargetOpener}'s job, shared with the other frontends.
 */
@Command(name = "export", mixinStandardHelpOptions = true,
        description = "Serve an image in the foreground over NBD (prints the URI) or ublk (--ublk, prints /dev/ublkbN). "
                + "SIGTERM or Ctrl-C flushes and closes the image.")
public class ExportCommand implements Callable<Integer> {
    /** Default of --nbd-carrier: the environment is read here, at the edge. */
    static final String NBD_CARRIER_DEFAULT = "${env:QBLK_NBD_CARRIER:-auto}";
    /** What --nbd-carrier auto means, decided by measurement (docs/performance.md, "NBD on a per-connection carrier"). */
    static final boolean NBD_CARRIER_AUTO = false;
    private static final String NBD_CARRIER_AUTO_NAME = NBD_CARRIER_AUTO ? "on" : "off";

    public static final String DEFAULT_NBD_ADDRESS = "127.0.0.1:" + NbdServer.DEFAULT_PORT;

    @Option(names = "--nbd", arity = "0..1", paramLabel = "ADDR:PORT|unix:PATH", preprocessor = OptionalAddress.class,
            description = "Serve over NBD on a TCP address (default " + DEFAULT_NBD_ADDRESS + ") or a unix socket.")
    String nbd;

    @Option(names = "--tls-creds", paramLabel = "DIR",
            description = "NBD over TLS (required): x509 credentials in DIR laid out as qemu's tls-creds-x509 "
                    + "(server-cert.pem, server-key.pem, ca-cert.pem). Clients connect with nbds:// or a tls-creds object.")
    Path tlsCreds;

    @Option(names = "--tls-verify-peer",
            description = "With --tls-creds: require a client certificate signed by DIR/ca-cert.pem "
                    + "(qemu's verify-peer=on; qblk.nbd.tls.verify-peer in the service).")
    boolean tlsVerifyPeer;

    @Option(names = "--tls-protocols", paramLabel = "LIST",
            description = "With --tls-creds: TLS versions offered, e.g. 1.3,1.2 (default: 1.3,1.2; with "
                    + "--tls-verify-peer 1.2, as gnutls clients send no RSA client certificate to this server under 1.3).")
    String tlsProtocols;

    @Option(names = "--ublk", description = "Serve as a local block device /dev/ublkbN (root, CONFIG_BLK_DEV_UBLK); prints the device.")
    boolean ublk;

    @Option(names = {"-q", "--queues"}, paramLabel = "N", description = "ublk: hardware queues (default 1, at most one per CPU).")
    int queues = 1;

    @Option(names = {"-d", "--depth"}, paramLabel = "DEPTH", description = "ublk: queue depth (default 64, at most 4096).")
    int depth = 64;

    @Option(names = "--name", paramLabel = "NAME", description = "Export name (default: empty, the default export).")
    String name = "";

    @Option(names = {"-r", "--read-only"}, description = "Refuse writes.")
    boolean readOnly;

    @Option(names = {"-t", "--type"}, paramLabel = "qcow2|raw|null", description = "Image format (default: detected from the file).")
    String type = "auto";

    @Option(names = "--size", paramLabel = "SIZE", description = "Size of a null target (e.g. 1G, 512M).")
    String size;

    @Option(names = "--metadata", paramLabel = "writethrough|writeback",
            description = "qcow2 metadata: writeback (default for NBD: cached until the next flush) or writethrough "
                    + "(default for --ublk: every completed write survives this process dying, so a filesystem mounted on "
                    + "the device keeps working across kill -9 + qblk ublk recover; allocating writes wait for a shared flush).")
    String metadata;

    @Option(names = "--file-io", defaultValue = UblkCommand.FILE_IO_DEFAULT, paramLabel = "auto|ring|pread",
            description = UblkCommand.FILE_IO_HELP)
    String fileIo;

    @Option(names = "--cache", paramLabel = "none|writeback",
            description = "Page-cache use of the image file: none (O_DIRECT for aligned requests, like qemu-nbd --cache=none "
                    + "and ublksrv; the default for --ublk, see docs/ublk.md) or writeback (buffered; the default for NBD). "
                    + "Falls back to buffered with a message where the file system refuses O_DIRECT.")
    String cache;

    @Option(names = "--nbd-carrier", defaultValue = NBD_CARRIER_DEFAULT, paramLabel = "auto|on|off",
            description = "NBD: on gives each connection an io_uring thread of its own that runs the connection's virtual threads "
                    + "and does their image file I/O (a request is read, served and answered on that thread); off keeps them on "
                    + "the JVM's scheduler with pread/pwrite; auto (default) is " + NBD_CARRIER_AUTO_NAME + " (measured: "
                    + "docs/performance.md). The environment variable QBLK_NBD_CARRIER sets the default.")
    String nbdCarrier;

    @Option(names = "--discard", paramLabel = "ignore|unmap", defaultValue = "unmap",
            description = "Freed qcow2 clusters (discard, write zeroes with unmap): unmap (default) punches them out of the image "
                    + "file, so its disk usage shrinks; ignore keeps the blocks allocated.")
    String discard;

    @Parameters(arity = "0..1", paramLabel = "FILE", description = "Image file (none for -t null).")
    Path file;

    @Spec
    CommandSpec spec;

    private final CountDownLatch ready = new CountDownLatch(1);
    private final CountDownLatch stopped = new CountDownLatch(1);
    private volatile String uri;
    private volatile Runnable stopAction;

    /** The frontends {@code export} can serve through. */
    enum Frontend { NBD, UBLK }

    @Override
    public Integer call() throws Exception {
        Frontend frontend = selectFrontend();
        UblkServer.Options ublkOptions = null;
        if (frontend == Frontend.UBLK) {
            ublkOptions = UblkServer.Options.defaults().withQueues(queues).withDepth(depth);
            try {
                UblkServer.checkLimits(ublkOptions);
                UblkCommand.requireDriver();
            } catch (UblkUnavailableException e) {
                spec.commandLine().getErr().println("qblk: " + e.getMessage());
                spec.commandLine().getErr().flush();
                return UblkUnavailableException.EXIT_CODE;
            }
        }
        MetadataWrite metadataWrite = metadata != null ? MetadataWrite.parse(metadata)
                : frontend == Frontend.UBLK ? MetadataWrite.WRITETHROUGH : MetadataWrite.WRITEBACK;
        CacheMode cacheMode = frontend == Frontend.UBLK ? UblkCommand.cacheMode(cache)
                : cache != null ? CacheMode.parse(cache) : CacheMode.WRITEBACK;
        boolean carrier = frontend == Frontend.NBD && nbdCarrier(nbdCarrier);
        BlockTarget target = openTarget(frontend == Frontend.UBLK ? FileIo.forUblk(fileIo) : carrier ? FileIo.CALLER_RING : FileIo.SYSCALLS,
                metadataWrite, cacheMode);
        if (!readOnly && target.writeRefusal() != null) {
            spec.commandLine().getErr().println("qblk: serving read-only: " + target.writeRefusal());
            spec.commandLine().getErr().flush();
        }
        try {
            return switch (frontend) {
                case NBD -> serveNbd(target, carrier);
                case UBLK -> UblkExport.serve(target, ublkOptions, System.out);
            };
        } finally {
            ready.countDown();
        }
    }

    private Frontend selectFrontend() {
        // --nbd is the default; --ublk is the exclusive alternative.
        if (ublk && nbd != null) throw new CommandLine.ParameterException(spec.commandLine(), "choose one of --nbd and --ublk");
        if (!ublk && (queues != 1 || depth != 64))
            throw new CommandLine.ParameterException(spec.commandLine(), "-q/--queues and -d/--depth are ublk options (add --ublk)");
        return ublk ? Frontend.UBLK : Frontend.NBD;
    }

    /** Opens FILE (or the null device) as -t/--read-only/--size say; ublk uses the queues' rings for file I/O. */
    BlockTarget openTarget(FileIo io, MetadataWrite metadataWrite, CacheMode cacheMode) throws IOException {
        ImageFormat format = type == null || type.equalsIgnoreCase("auto") ? null : ImageFormat.parse(type);
        TargetOptions o = TargetOptions.defaults().withFormat(format).withReadOnly(readOnly).withFileIo(io).withMetadata(metadataWrite).withCache(cacheMode)
                .withDiscard(DiscardMode.parse(discard));
        if (format == ImageFormat.NULL) {
            if (file != null) throw new CommandLine.ParameterException(spec.commandLine(), "a null target takes --size, not a FILE");
            if (size == null) throw new CommandLine.ParameterException(spec.commandLine(), "a null target needs --size");
            return TargetOpener.open(null, o.withNullSize(parseSize(size)));
        }
        if (size != null) throw new CommandLine.ParameterException(spec.commandLine(), "--size is only for -t null");
        if (file == null) throw new CommandLine.ParameterException(spec.commandLine(), "missing FILE");
        return TargetOpener.open(file, o);
    }

    /** --nbd-carrier: auto, on or off. */
    private boolean nbdCarrier(String mode) {
        return switch (mode == null || mode.isEmpty() ? "auto" : mode) {
            case "auto" -> NBD_CARRIER_AUTO;
            case "on" -> true;
            case "off" -> false;
            default -> throw new CommandLine.ParameterException(spec.commandLine(), "--nbd-carrier '" + mode + "': expected auto, on or off");
        };
    }

    private int serveNbd(BlockTarget target, boolean carrier) throws IOException {
        NbdServer server;
        try {
            NbdServer.Options options = NbdServer.Options.defaults().withCarrier(carrier);
            if (tlsCreds == null && (tlsVerifyPeer || tlsProtocols != null))
                throw new CommandLine.ParameterException(spec.commandLine(), "--tls-verify-peer and --tls-protocols need --tls-creds");
            if (tlsCreds != null) options = options.withTls(NbdTls.load(tlsCreds, tlsVerifyPeer, tlsProtocols == null
                    ? NbdTls.defaultProtocols(tlsVerifyPeer) : NbdTls.parseProtocols(tlsProtocols)), true);
            server = new NbdServer(options);
        } catch (IOException | RuntimeException e) {
            target.close();
            throw e;
        }
        String address = nbd == null ? DEFAULT_NBD_ADDRESS : nbd;
        try {
            if (address.startsWith("unix:")) {
                server.bindUnix(Path.of(address.substring(5)).toAbsolutePath());
            } else {
                InetSocketAddress want = parseTcp(address);
                server.bindTcp(want.getHostString(), want.getPort());
            }
            server.addExport(name, target, readOnly);
            uri = server.uris(name).getFirst();
        } catch (IOException | RuntimeException e) {
            server.close();
            target.close();
            throw e;
        }
        return runUntilStopped(() -> {
            server.close();
            try {
                if (!target.readOnly()) target.flush();
            } finally {
                target.close();
            }
        });
    }

    /** Prints the URI, then blocks until SIGTERM/SIGINT (a JVM shutdown hook) or {@link #stop()}. */
    private int runUntilStopped(IoAction shutdown) throws IOException {
        Object lock = new Object();
        IOException[] failure = new IOException[1];
        boolean[] done = new boolean[1];
        Runnable closeOnce = () -> {
            synchronized (lock) {
                if (done[0]) return;
                done[0] = true;
                try {
                    shutdown.run();
                } catch (IOException e) {
                    failure[0] = e;
                } finally {
                    stopped.countDown();
                }
            }
        };
        Thread hook = new Thread(closeOnce, "qblk-export-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        stopAction = () -> {
            closeOnce.run();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException ignored) {
                // already shutting down
            }
        };
        PrintWriter out = spec.commandLine().getOut();
        out.println(uri);
        out.flush();
        ready.countDown();
        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            stopAction.run();
        }
        synchronized (lock) {
            if (failure[0] != null) throw failure[0];
        }
        return 0;
    }

    @FunctionalInterface
    private interface IoAction {
        void run() throws IOException;
    }

    /** For tests and embedding: the URI once serving (null if startup failed); waits until then. */
    String awaitUri() throws InterruptedException {
        ready.await();
        return uri;
    }

    /** Stops serving as SIGTERM would: answers in-flight requests, flushes and closes the image. */
    void stop() {
        Runnable a = stopAction;
        if (a != null) a.run();
    }

    // ------------------------------------------------------------------ parsing

    private static final Pattern TCP = Pattern.compile("^(\\[[0-9A-Fa-f:.]+]|[A-Za-z0-9.\\-]*):(\\d{1,5})$");

    /** True for what --nbd accepts as its optional value (so FILE is not taken for an address). */
    static boolean looksLikeAddress(String s) {
        return s.startsWith("unix:") || TCP.matcher(s).matches();
    }

    static InetSocketAddress parseTcp(String s) {
        var m = TCP.matcher(s);
        if (!m.matches()) throw new IllegalArgumentException("bad NBD address '" + s + "' (expected ADDR:PORT or unix:PATH)");
        String host = m.group(1);
        if (host.isEmpty()) host = "127.0.0.1";
        if (host.startsWith("[")) host = host.substring(1, host.length() - 1);
        int port = Integer.parseInt(m.group(2));
        if (port > 65535) throw new IllegalArgumentException("bad port " + port);
        return InetSocketAddress.createUnresolved(host, port);
    }

    /** A device size: {@link Sizes} grammar, positive, a multiple of 512. */
    static long parseSize(String s) {
        long v = Sizes.parse(s);
        if (v <= 0 || v % 512 != 0) throw new IllegalArgumentException("size must be a positive multiple of 512: " + s);
        return v;
    }

    /** Lets {@code --nbd} stand alone before FILE: it takes the next word only if that is an address. */
    public static final class OptionalAddress implements CommandLine.IParameterPreprocessor {
        @Override
        public boolean preprocess(Stack<String> args, CommandSpec commandSpec, ArgSpec argSpec, Map<String, Object> info) {
            String separator = (String) info.get("separator");
            String value = DEFAULT_NBD_ADDRESS;
            boolean attached = separator != null && !separator.isBlank();             // --nbd=VALUE
            if (attached) value = args.pop();
            else if (!args.isEmpty() && looksLikeAddress(args.peek())) value = args.pop();
            argSpec.setValue(value);
            return true;
        }
    }
}
