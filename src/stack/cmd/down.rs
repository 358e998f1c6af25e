//! `devcache down`: every consumer unwired (the user's own files given back), the
//! cache container removed, and the data volume kept unless asked otherwise.

use anyhow::{Result, bail};
use bollard::query_parameters::RemoveVolumeOptions;

use crate::stack::engine::{self, is_not_found, message};
use crate::stack::names::Project;
use crate::stack::state::Choices;
use crate::stack::{cache, consumers};

/// `devcache down [--volumes]`: with `remove_volume`, everything cached goes too.
pub async fn down(project: &str, remove_volume: bool) -> Result<()> {
    let project = Project::new(project)?;
    let docker = engine::connect().await?;
    let choices = Choices::load(&project, None)?;
    for service in choices.consumers() {
        let Some(consumer) = consumers::find(&docker, &project, &service).await? else {
            continue;
        };
        if !consumer.running {
            println!(
                "{service}: not running; its pip.conf still names the cache: start it and run `devcache up` or `devcache disable {service}`"
            );
            continue;
        }
        let unwiring = consumers::unwire(&docker, &consumer).await?;
        if unwiring.removed || unwiring.restored_users_file {
            println!(
                "{service}: pip.conf and uv.toml taken out, since the cache is going away{} (`devcache up` puts them back)",
                if unwiring.restored_users_file {
                    "; your own are back"
                } else {
                    ""
                }
            );
        }
    }
    let name = project.cache_container();
    if cache::remove(&docker, &project).await? {
        println!("cache {name}: stopped and removed");
    } else {
        println!("cache {name}: was not there");
    }
    if let Some(found) = cache::find(&docker, &project).await?
        && found.owner == cache::Owner::TutorPlugin
    {
        println!(
            "cache {}: Tutor runs it from devcache's plugin, and it stays (`devcache tutor disable` \
             takes the plugin out)",
            found.name
        );
    }
    let volume = project.volume();
    if remove_volume {
        match docker
            .remove_volume(&volume, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => println!("volume {volume}: removed, with everything cached"),
            Err(e) if is_not_found(&e) => println!("volume {volume}: was not there"),
            Err(e) => bail!("cannot remove volume {volume}: {}", message(&e)),
        }
    } else {
        println!("volume {volume}: kept (`devcache down --volumes` removes it)");
    }
    Ok(())
}
