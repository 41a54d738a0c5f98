package io.qblk.service;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.quarkus.runtime.configuration.MemorySize;
import io.vertx.core.http.HttpMethod;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.handler.BodyHandler;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;
import java.util.List;
import org.eclipse.microprofile.config.ConfigProvider;

/**
 * Enforces {@code quarkus.http.limits.max-body-size} on request bodies ahead of the REST layer,
 * chunked bodies included: an oversized body is answered once, with a problem+json 413, and never
 * reaches a resource. (Left to the REST layer, a chunked body over the limit got an empty 413
 * while the resource went on to answer the truncated request: "Response has already been written".)
 */
@ApplicationScoped
public class BodyLimit {
    private static final ObjectMapper JSON = new ObjectMapper();

    void install(@Observes Router router) {
        long limit = ConfigProvider.getConfig().getOptionalValue("quarkus.http.limits.max-body-size", MemorySize.class)
                .map(MemorySize::asLongValue).orElse(64L << 10);
        for (HttpMethod m : List.of(HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH)) {
            router.route().method(m).order(-10)
                    .handler(BodyHandler.create(false).setBodyLimit(limit))
                    .failureHandler(ctx -> {
                        if (ctx.statusCode() != 413 || ctx.response().ended()) {
                            ctx.next();
                            return;
                        }
                        String body;
                        try {
                            body = JSON.writeValueAsString(new Problem("https://qblk.io/problems/request-body-too-large",
                                    "Request body too large", 413, "request body too large: at most " + limit + " bytes",
                                    ctx.request().path(), List.of()));
                        } catch (Exception e) {
                            body = "{\"status\":413}";
                        }
                        ctx.response().setStatusCode(413).putHeader("Content-Type", Problem.MEDIA_TYPE)
                                .putHeader("Connection", "close").end(body);
                    });
        }
    }
}
