// Deletes the topics named on standard input (one a line) from the broker at args[0], with
// the Admin client of the installed Kafka jars. Run by `scripts/kafka-local.sh prune` with
// Java's source launcher (`java -cp "$libs/*" DeleteTopics.java HOST:PORT`), so it needs no
// build step. A topic already gone is not an error; any other failure exits with status 1.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class DeleteTopics {
    public static void main(String[] args) throws Exception {
        List<String> topics = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
            for (String line; (line = in.readLine()) != null; ) {
                if (!line.isBlank()) topics.add(line.strip());
            }
        }
        if (topics.isEmpty()) return;
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        int failed = 0;
        try (Admin admin = Admin.create(props)) {
            Map<String, KafkaFuture<Void>> results = admin.deleteTopics(topics).topicNameValues();
            for (Map.Entry<String, KafkaFuture<Void>> result : results.entrySet()) {
                try {
                    result.getValue().get(60, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) {
                        System.err.println("cannot delete " + result.getKey() + ": " + e.getCause());
                        failed++;
                    }
                }
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }
}
