package io.qblk.cli;

import io.qblk.util.Sizes;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code qblk device add|list|del|recover}: manage the devices of a running {@code qblk serve} over its REST API. */
@Command(name = "device", mixinStandardHelpOptions = true,
        description = "Manage devices of a running qblk service (see 'qblk serve').",
        subcommands = {DeviceCommand.Add.class, DeviceCommand.ListDevices.class, DeviceCommand.Del.class, DeviceCommand.Recover.class})
public class DeviceCommand {

    /** Options every device subcommand shares. */
    public static class Remote {
        @Option(names = "--url", defaultValue = "${QBLK_URL:-http://127.0.0.1:8420}",
                description = "Service URL (default: ${DEFAULT-VALUE}; env QBLK_URL).")
        String url;

        @Option(names = "--token", defaultValue = "${QBLK_API_TOKEN}",
                description = "Bearer token when the service sets qblk.api.token (env QBLK_API_TOKEN).")
        String token;

        @Option(names = {"-o", "--output"}, defaultValue = "table", description = "table or json (default: ${DEFAULT-VALUE}).")
        String output;

        static final ObjectMapper JSON = new ObjectMapper();

        boolean json() {
            if (!output.equals("json") && !output.equals("table"))
                throw new IllegalArgumentException("--output must be table or json, not '" + output + "'");
            return output.equals("json");
        }

        /** Sends a request; returns the JSON body of a 2xx answer (null when empty), throws with the problem detail otherwise. */
        JsonNode call(String method, String path, JsonNode body) throws IOException, InterruptedException {
            URI uri;
            try {
                uri = URI.create(url.replaceAll("/+$", "") + path);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--url: '" + url + "' is not a URL");
            }
            HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(60)).header("Accept", "application/json");
            if (token != null && !token.isEmpty()) b.header("Authorization", "Bearer " + token);
            b.method(method, body == null ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body)));
            if (body != null) b.header("Content-Type", "application/json");
            HttpResponse<String> r;
            try (HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()) {
                r = client.send(b.build(), HttpResponse.BodyHandlers.ofString());
            } catch (ConnectException e) {
                throw new IOException("cannot reach the qblk service at " + url + " (is 'qblk serve' running?)");
            }
            JsonNode n = r.body().isBlank() ? null : parse(r.body());
            if (r.statusCode() / 100 != 2) {
                String detail = n != null && n.hasNonNull("detail") ? n.get("detail").asText() : r.body().strip();
                throw new IOException("service answered " + r.statusCode() + ": " + detail);
            }
            return n;
        }

        private static JsonNode parse(String s) {
            try {
                return JSON.readTree(s);
            } catch (IOException e) {
                return JSON.getNodeFactory().textNode(s);
            }
        }
    }

    static void printJson(PrintWriter out, JsonNode n) throws IOException {
        out.println(Remote.JSON.writerWithDefaultPrettyPrinter().writeValueAsString(n));
        out.flush();
    }

    /** One line per device, columns padded to their widest cell. */
    static void printTable(PrintWriter out, List<JsonNode> devices) {
        String[] head = {"NAME", "STATE", "TARGET", "FRONTEND", "SIZE", "ENDPOINT", "IMAGE"};
        List<String[]> rows = new ArrayList<>();
        rows.add(head);
        for (JsonNode d : devices) {
            String endpoints = d.has("endpoints") && d.get("endpoints").isArray() && !d.get("endpoints").isEmpty()
                    ? String.join(",", iterable(d.get("endpoints"))) : text(d, "endpoint");
            rows.add(new String[]{text(d, "name"), text(d, "state"), text(d, "target"), text(d, "frontend"),
                    Sizes.exact(d.path("size").asLong()), endpoints, text(d, "image")});
        }
        int[] w = new int[head.length];
        for (String[] r : rows) for (int i = 0; i < r.length; i++) w[i] = Math.max(w[i], r[i].length());
        for (String[] r : rows) {
            StringBuilder b = new StringBuilder();
            for (int i = 0; i < r.length; i++) {
                b.append(r[i]);
                if (i < r.length - 1) b.append(" ".repeat(w[i] - r[i].length() + 2));
            }
            out.println(b.toString().stripTrailing());
        }
        for (JsonNode d : devices) if (d.hasNonNull("error")) out.println(text(d, "name") + ": " + text(d, "error"));
        out.flush();
    }

    private static List<String> iterable(JsonNode arr) {
        List<String> l = new ArrayList<>();
        arr.forEach(e -> l.add(e.asText()));
        return l;
    }

    private static String text(JsonNode n, String f) {
        return n.hasNonNull(f) ? n.get(f).asText() : "-";
    }

    static String encode(String name) {
        return URLEncoder.encode(name, StandardCharsets.UTF_8);
    }

    @Command(name = "add", mixinStandardHelpOptions = true, description = "Serve an image as a new device.")
    public static class Add implements Callable<Integer> {
        @Mixin Remote remote;
        @Spec CommandSpec spec;
        @Parameters(index = "0", description = "Device name (a-z, 0-9, '-').") String name;
        @Option(names = "--image", description = "Image path on the server (under qblk.images.allowed-dirs).") String image;
        @Option(names = "--target", description = "qcow2 (default), raw or null.") String target;
        @Option(names = "--frontend", description = "nbd (default) or ublk.") String frontend;
        @Option(names = "--queues") Integer queues;
        @Option(names = "--depth") Integer depth;
        @Option(names = "--read-only") Boolean readOnly;
        @Option(names = "--nbd-address", description = "host:port for the NBD export.") String nbdAddress;
        @Option(names = "--create-size", description = "Create the image with this size when missing (e.g. 8G).") String createSize;
        @Option(names = "--cache", paramLabel = "none|writeback",
                description = "Page-cache use of the image (default: the service's qblk.ublk.cache for ublk, writeback for NBD).") String cache;

        @Override
        public Integer call() throws Exception {
            boolean json = remote.json();
            ObjectNode body = Remote.JSON.createObjectNode();
            body.put("name", name);
            if (image != null) body.put("image", image);
            if (target != null) body.put("target", target);
            if (frontend != null) body.put("frontend", frontend);
            if (queues != null) body.put("queues", queues);
            if (depth != null) body.put("depth", depth);
            if (readOnly != null) body.put("readOnly", readOnly);
            if (nbdAddress != null) body.put("nbdAddress", nbdAddress);
            if (createSize != null) body.put("createSize", createSize);
            if (cache != null) body.put("cache", cache);
            JsonNode d = remote.call("POST", "/devices", body);
            PrintWriter out = spec.commandLine().getOut();
            if (json) printJson(out, d);
            else printTable(out, List.of(d));
            return 0;
        }
    }

    @Command(name = "list", aliases = "ls", mixinStandardHelpOptions = true, description = "List the service's devices.")
    public static class ListDevices implements Callable<Integer> {
        @Mixin Remote remote;
        @Spec CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            boolean json = remote.json();
            JsonNode arr = remote.call("GET", "/devices", null);
            PrintWriter out = spec.commandLine().getOut();
            if (json) printJson(out, arr);
            else {
                List<JsonNode> l = new ArrayList<>();
                arr.forEach(l::add);
                printTable(out, l);
            }
            return 0;
        }
    }

    @Command(name = "del", aliases = "rm", mixinStandardHelpOptions = true, description = "Stop a device (drain, flush, close its image).")
    public static class Del implements Callable<Integer> {
        @Mixin Remote remote;
        @Spec CommandSpec spec;
        @Parameters(index = "0", description = "Device name.") String name;

        @Override
        public Integer call() throws Exception {
            boolean json = remote.json();
            remote.call("DELETE", "/devices/" + encode(name), null);
            PrintWriter out = spec.commandLine().getOut();
            if (json) printJson(out, Remote.JSON.createObjectNode().put("deleted", name));
            else out.println("deleted " + name);
            out.flush();
            return 0;
        }
    }

    @Command(name = "recover", mixinStandardHelpOptions = true, description = "Restart a failed device from its image.")
    public static class Recover implements Callable<Integer> {
        @Mixin Remote remote;
        @Spec CommandSpec spec;
        @Parameters(index = "0", description = "Device name.") String name;

        @Override
        public Integer call() throws Exception {
            boolean json = remote.json();
            JsonNode d = remote.call("POST", "/devices/" + encode(name) + "/recover", null);
            PrintWriter out = spec.commandLine().getOut();
            if (json) printJson(out, d);
            else printTable(out, List.of(d));
            return 0;
        }
    }
}
